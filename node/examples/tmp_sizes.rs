use std::mem::size_of;
fn main() {
    println!("Node {}", size_of::<grove_node::node::Node>());
    println!(
        "HyParView {}",
        size_of::<grove_node::proto::hyparview::HyParView>()
    );
    println!(
        "Traversal {}",
        size_of::<grove_node::proto::nat::Traversal>()
    );
    println!("Message {}", size_of::<grove_node::wire::Message>());
    println!(
        "HvMessage {}",
        size_of::<grove_node::proto::hyparview::Message>()
    );
    println!(
        "PtMessage {}",
        size_of::<grove_node::proto::plumtree::Message>()
    );
    println!(
        "NatMessage {}",
        size_of::<grove_node::proto::nat::Message>()
    );
    println!(
        "HvOutput {}",
        size_of::<grove_node::proto::hyparview::Output>()
    );
    println!(
        "PtOutput {}",
        size_of::<grove_node::proto::plumtree::Output>()
    );
    println!("Event {}", size_of::<grove_node::node::Event>());
    println!("NatEvent {}", size_of::<grove_node::proto::nat::Event>());
    println!("NatConfig {}", size_of::<grove_node::proto::nat::Config>());
    println!(
        "HvConfig {}",
        size_of::<grove_node::proto::hyparview::Config>()
    );
}
