//! The segment log (under construction).
