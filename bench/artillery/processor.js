// A fresh client_msg_id per send, and a 256-byte body like the harness's
// `body_size = "256B"`.
const crypto = require('crypto');
const BODY = 'x'.repeat(256);

function newMessage(context, events, done) {
  context.vars.msg_id = crypto.randomUUID();
  context.vars.body = BODY;
  return done();
}

module.exports = { newMessage };
