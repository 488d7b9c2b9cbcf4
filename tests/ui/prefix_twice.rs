lockutils::synchronized_with_prefix!(nova_synchronized, "nova");

nova_synchronized!("x", prefix = "other"; fn f() {});

fn main() {}
