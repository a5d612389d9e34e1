//! The event loop: start what fits, wait for exits and deadlines, account,
//! record, free, repeat.
