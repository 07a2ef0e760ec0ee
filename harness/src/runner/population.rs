//! Who is in the run: users, their devices, conversations and memberships,
//! all derived from the seed so a run can be replayed exactly.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use uuid::Uuid;

use crate::client::SocketSpec;
use crate::history::{ConversationInfo, DeviceInfo, ResumeMode};
use crate::scenario::Population;

pub struct Cast {
    pub devices: Vec<DeviceInfo>,
    pub conversations: Vec<ConversationInfo>,
    pub sockets: Vec<SocketSpec>,
}

impl Cast {
    /// Each user's conversations (what a token grants), in a stable order.
    pub fn memberships(&self) -> std::collections::BTreeMap<Uuid, Vec<Uuid>> {
        let mut memberships = std::collections::BTreeMap::<Uuid, Vec<Uuid>>::new();
        for socket in &self.sockets {
            let conversations = memberships.entry(socket.user_id).or_default();
            if !conversations.contains(&socket.conversation_id) {
                conversations.push(socket.conversation_id);
            }
        }
        memberships
    }

    /// Conversation ids in conversation-index order.
    pub fn conversation_ids(&self) -> Vec<Uuid> {
        self.conversations
            .iter()
            .map(|c| c.conversation_id)
            .collect()
    }
}

fn uuid_from(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

/// Builds the cast. Each conversation gets `members_per_conversation`
/// distinct users; every device of a member user has one socket in it.
/// Devices are split between own-cursor and stored-cursor resumption by
/// `client_cursor_share`, shuffled so both kinds appear everywhere.
pub fn build(population: &Population, client_cursor_share: f64, rng: &mut StdRng) -> Cast {
    let users: Vec<Uuid> = (0..population.users).map(|_| uuid_from(rng)).collect();
    let device_count = (population.users * population.devices_per_user) as usize;
    let own_cursor_devices =
        (client_cursor_share.clamp(0.0, 1.0) * device_count as f64).round() as usize;
    let mut modes: Vec<ResumeMode> = (0..device_count)
        .map(|i| {
            if i < own_cursor_devices {
                ResumeMode::ClientCursor
            } else {
                ResumeMode::StoredCursor
            }
        })
        .collect();
    modes.shuffle(rng);
    let mut devices: Vec<DeviceInfo> = (0..device_count)
        .map(|i| DeviceInfo {
            user_id: users[i / population.devices_per_user as usize],
            client_id: uuid_from(rng),
            resume_mode: modes[i],
            conversations: Vec::new(),
        })
        .collect();
    let conversations: Vec<ConversationInfo> = (0..population.conversations)
        .map(|_| ConversationInfo {
            conversation_id: uuid_from(rng),
        })
        .collect();
    let mut user_order: Vec<usize> = (0..users.len()).collect();
    let mut sockets = Vec::new();
    for (conversation, info) in conversations.iter().enumerate() {
        user_order.shuffle(rng);
        let members =
            &user_order[..population.members_per_conversation.min(population.users) as usize];
        for &user in members {
            for d in 0..population.devices_per_user as usize {
                let device = user * population.devices_per_user as usize + d;
                devices[device].conversations.push(conversation as u32);
                sockets.push(SocketSpec {
                    index: sockets.len(),
                    device: device as u32,
                    conversation: conversation as u32,
                    user_id: devices[device].user_id,
                    client_id: devices[device].client_id,
                    conversation_id: info.conversation_id,
                    resume_mode: devices[device].resume_mode,
                    bearer: None,
                });
            }
        }
    }
    Cast {
        devices,
        conversations,
        sockets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sizes_and_membership_follow_the_population() {
        let population = Population {
            users: 10,
            devices_per_user: 2,
            conversations: 4,
            members_per_conversation: 3,
        };
        let cast = build(&population, 0.5, &mut StdRng::seed_from_u64(3));
        assert_eq!(cast.devices.len(), 20);
        assert_eq!(cast.sockets.len() as u64, population.total_sockets());
        let own = cast
            .devices
            .iter()
            .filter(|d| d.resume_mode == ResumeMode::ClientCursor)
            .count();
        assert_eq!(own, 10);
        for conversation in 0..4u32 {
            let mut users: Vec<_> = cast
                .sockets
                .iter()
                .filter(|s| s.conversation == conversation)
                .map(|s| s.user_id)
                .collect();
            users.sort();
            users.dedup();
            assert_eq!(users.len(), 3, "distinct members per conversation");
        }
        // Same seed, same cast.
        let again = build(&population, 0.5, &mut StdRng::seed_from_u64(3));
        assert_eq!(again.devices, cast.devices);
    }
}
