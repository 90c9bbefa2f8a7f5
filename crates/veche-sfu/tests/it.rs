//! Every integration test of this crate, as modules of one binary: one link instead of one
//! per file (each links the whole SFU), which dominated a clean build.

mod common;

mod active_speaker;
mod bad_requests;
mod bandwidth_estimate;
mod batched_datagrams;
mod connection_quality;
mod dynacast;
mod e2ee_delivery;
mod garbage_datagrams;
mod keyframe_on_subscribe;
mod layer_switch;
mod meetings;
mod news_held;
mod pause_resume;
mod presence_events;
mod room_limits;
mod screen_share;
mod shards;
mod simulcast_layers;
mod stun_routing;
mod three_party;
