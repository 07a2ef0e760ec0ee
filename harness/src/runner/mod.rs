//! Orchestration of one run: Redis, servers, ramp-up, churn, drain, check, report.
