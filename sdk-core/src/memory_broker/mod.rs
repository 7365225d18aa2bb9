//! An in-memory broker implementing [`crate::Publisher`] and [`crate::Subscriber`], with
//! fault injection for tests.

mod broker;
mod faults;
mod group_queue;
mod publisher;
mod settler;
mod subscriber;

pub use broker::{MemoryBroker, MemoryBrokerBuilder};
pub use faults::{
    AckContext, AckFault, DeliveryContext, DeliveryFault, FaultInjector, PublishContext,
    PublishFault,
};
pub use publisher::MemoryPublisher;
pub use subscriber::MemorySubscriber;
