//! adt-runner: the unprivileged runner of autopkgtest-xen.
mod deb822;
mod dep8;
mod deps;

fn main() {}
