//! The Sluice guest SDK: write a model as a plain function from one row to its outputs.
//!
//! It owns the guest side of ABI version 2 (`sandbox/ABI.md`): the row export whose name
//! carries the model's signature, reading a row's named inputs, handing outputs to the host,
//! and the deterministic math functions the host offers. It must not give a model anything
//! the ABI does not: no clock, no randomness, no state that outlives a row.
//!
//! ```ignore
//! #![no_std]
//! use sluice_guest::math::exp;
//!
//! sluice_guest::model! {
//!     fn risk;
//!     inputs { vehicle_age_years: f64, accidents_5y: i64 }
//!     outputs { high_risk, mean_score }
//! }
//!
//! fn risk(row: &Inputs) -> Outputs {
//!     let linear = -3.0 + 0.1 * row.vehicle_age_years.unwrap_or(0.0);
//!     let score = 1.0 / (1.0 + exp(-linear));
//!     Outputs { high_risk: if row.accidents_5y.unwrap_or(0) > 1 { 1.0 } else { 0.0 }, mean_score: score }
//! }
//! ```
//!
//! Inputs are read by name (`row.vehicle_age_years`), as `Option`s that are `None` for a
//! null; the host binds them to the manifest's columns by name, so the manifest's order
//! does not matter. Input types are the manifest's: `f64`, `i64`, `bool`, `category` (the
//! code, an `i64`) and `date` (days since 1970-01-01, an `i64`).
//!
//! A model crate is `#![no_std]` and builds with
//! `cargo build --release --target wasm32-unknown-unknown` (crate type `cdylib`). The host
//! refuses a row function that writes linear memory, a global or a table: keep per-row work
//! in local variables, constant tables in `const` or `static` items, and use [`math`]
//! rather than a software `libm`.
#![no_std]

/// Deterministic math computed natively by the host (each call is charged a little fuel).
/// Use these rather than a software implementation compiled into the model: they are
/// faster, and they keep the row function free of memory writes.
pub mod math {
    #[link(wasm_import_module = "sluice:math")]
    unsafe extern "C" {
        #[link_name = "exp"]
        fn host_exp(x: f64) -> f64;
        #[link_name = "ln"]
        fn host_ln(x: f64) -> f64;
        #[link_name = "log2"]
        fn host_log2(x: f64) -> f64;
        #[link_name = "log10"]
        fn host_log10(x: f64) -> f64;
        #[link_name = "sin"]
        fn host_sin(x: f64) -> f64;
        #[link_name = "cos"]
        fn host_cos(x: f64) -> f64;
        #[link_name = "tan"]
        fn host_tan(x: f64) -> f64;
        #[link_name = "atan"]
        fn host_atan(x: f64) -> f64;
        #[link_name = "tanh"]
        fn host_tanh(x: f64) -> f64;
        #[link_name = "pow"]
        fn host_pow(x: f64, y: f64) -> f64;
        #[link_name = "atan2"]
        fn host_atan2(y: f64, x: f64) -> f64;
        #[link_name = "sqrt"]
        fn host_sqrt(x: f64) -> f64;
        #[link_name = "floor"]
        fn host_floor(x: f64) -> f64;
        #[link_name = "ceil"]
        fn host_ceil(x: f64) -> f64;
    }

    macro_rules! unary {
        ($($(#[$doc:meta])* $name:ident => $host:ident;)*) => {$(
            $(#[$doc])*
            #[inline(always)]
            pub fn $name(x: f64) -> f64 {
                // SAFETY: a pure host function of its argument; it reads and writes nothing.
                unsafe { $host(x) }
            }
        )*};
    }

    unary! {
        /// eˣ.
        exp => host_exp;
        /// The natural logarithm.
        ln => host_ln;
        /// The base-2 logarithm.
        log2 => host_log2;
        /// The base-10 logarithm.
        log10 => host_log10;
        /// Sine (radians).
        sin => host_sin;
        /// Cosine (radians).
        cos => host_cos;
        /// Tangent (radians).
        tan => host_tan;
        /// Arctangent.
        atan => host_atan;
        /// Hyperbolic tangent.
        tanh => host_tanh;
        /// The square root.
        sqrt => host_sqrt;
        /// The largest integer not above `x`.
        floor => host_floor;
        /// The smallest integer not below `x`.
        ceil => host_ceil;
    }

    /// xʸ.
    #[inline(always)]
    pub fn pow(x: f64, y: f64) -> f64 {
        // SAFETY: a pure host function of its arguments; it reads and writes nothing.
        unsafe { host_pow(x, y) }
    }

    /// The four-quadrant arctangent of y/x.
    #[inline(always)]
    pub fn atan2(y: f64, x: f64) -> f64 {
        // SAFETY: a pure host function of its arguments; it reads and writes nothing.
        unsafe { host_atan2(y, x) }
    }
}

#[link(wasm_import_module = "sluice")]
unsafe extern "C" {
    #[link_name = "emit"]
    fn host_emit(index: i32, value: f64);
}

/// Hands output `index` of the current row to the host; use [`model!`] instead.
#[doc(hidden)]
#[inline(always)]
pub fn emit(index: i32, value: f64) {
    // SAFETY: the host's `emit` writes into the driver's memory, never the model's.
    unsafe { host_emit(index, value) }
}

/// A panic ends the row (it becomes a trap, and the row contributes its defaults). The
/// handler does nothing else, so the panic path writes no memory.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

#[doc(hidden)]
#[macro_export]
macro_rules! __wasm_type {
    (f64) => {
        f64
    };
    (i64) => {
        i64
    };
    (bool) => {
        i64
    };
    (category) => {
        i64
    };
    (date) => {
        i64
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __value_type {
    (f64) => {
        f64
    };
    (i64) => {
        i64
    };
    (bool) => {
        bool
    };
    (category) => {
        i64
    };
    (date) => {
        i64
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __decode {
    (bool, $value:expr) => {
        $value != 0
    };
    ($other:ident, $value:expr) => {
        $value
    };
}

/// Declares a model: its row function, the inputs it reads (by name, with the manifest's
/// types) and the outputs it writes (by name). It generates `Inputs` (one `Option` field per
/// input) and `Outputs` (one `f64` field per output), and the ABI 2 row export. For a
/// histogram output, write the bin index; for a count, 0 or 1.
#[macro_export]
macro_rules! model {
    (
        fn $function:ident;
        inputs { $($input:ident : $ty:ident),* $(,)? }
        outputs { $($output:ident),+ $(,)? }
    ) => {
        /// One row's inputs; `None` is a null.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct Inputs {
            $(pub $input: Option<$crate::__value_type!($ty)>,)*
        }

        /// One row's outputs, in any order; the host matches them to the manifest by name.
        #[derive(Clone, Copy, Debug, Default, PartialEq)]
        pub struct Outputs {
            $(pub $output: f64,)+
        }

        #[unsafe(export_name = concat!(
            "sluice_row_v2(", $(stringify!($input), ":", stringify!($ty), ",",)* ")->(",
            $(stringify!($output), ",",)+ ")"
        ))]
        extern "C" fn __sluice_row($($input: $crate::__wasm_type!($ty),)* present: i64) {
            let mut _bit = 0u32;
            let row = Inputs {
                $($input: {
                    let is_present = (present >> _bit) & 1 != 0;
                    _bit += 1;
                    if is_present { Some($crate::__decode!($ty, $input)) } else { None }
                },)*
            };
            let out: Outputs = $function(&row);
            let mut _index = 0i32;
            $(
                $crate::emit(_index, out.$output);
                _index += 1;
            )+
        }
    };
}
