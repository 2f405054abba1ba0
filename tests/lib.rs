//! The Sluice integration tests live in `integration/`: one test binary that drives the
//! real gateway (router, service, store, vault, sandbox and policy gate) end to end.
//! This library target is empty; it exists so the package has a primary target.
