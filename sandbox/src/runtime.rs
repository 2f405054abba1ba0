//! The model runtime: one wasmtime `Engine` per process, a fresh `Store` per run.
//!
//! It owns engine configuration, limits, instantiation, moving batches into guest memory
//! and validating what comes back. It must not aggregate, add noise or decide whether a run
//! is allowed; it must not give the guest any import, file, clock or randomness.

use std::borrow::Borrow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{
    Config, Engine, Instance, InstanceAllocationStrategy, Memory, Module, OptLevel, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
};

use crate::abi::{ABI_VERSION, BatchLayout, EXPORT_ABI_VERSION, EXPORT_MAP, EXPORT_MEMORY, EXPORT_RESERVE};
use crate::batch::{Batch, ColumnValues, ModelOutputs};
use crate::error::SandboxError;
use crate::manifest::{ColumnType, Manifest, ModelDigest};
use crate::review::review_module;

/// How often the epoch ticker advances the engine's epoch.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How runs are bounded in time. Every choice bounds every run; they differ in cost and in
/// determinism. See ARCHITECTURE.md for the measurements behind the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metering {
    /// Fuel (deterministic instruction budget) and an epoch deadline (wall clock).
    FuelAndEpoch,
    /// Fuel only: deterministic, but a host-side stall is not bounded by it.
    Fuel,
    /// An epoch deadline only: the cheapest bound, not deterministic.
    Epoch,
}

impl Metering {
    fn fuel(self) -> bool {
        matches!(self, Metering::FuelAndEpoch | Metering::Fuel)
    }
    fn epoch(self) -> bool {
        matches!(self, Metering::FuelAndEpoch | Metering::Epoch)
    }
}

/// The hard limits every run is held to.
#[derive(Debug, Clone)]
pub struct RuntimeLimits {
    pub max_module_bytes: usize,
    /// Functions a module may define; more is refused at review.
    pub max_functions: u32,
    /// Linear memory cap; growing past it traps.
    pub max_memory_bytes: usize,
    pub max_table_elements: usize,
    /// Fuel for instantiation and `sluice_reserve`.
    pub fuel_setup: u64,
    /// Fuel granted per row of each batch (about one unit per wasm instruction).
    pub fuel_per_row: u64,
    /// Wall-clock bound on a whole run, enforced by epoch interruption.
    pub deadline: Duration,
    pub max_wasm_stack: usize,
    /// Runs that may execute at once (pooling allocator slots).
    pub max_concurrent_runs: u32,
    pub metering: Metering,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        Self {
            max_module_bytes: 8 << 20,
            max_functions: 20_000,
            max_memory_bytes: 64 << 20,
            max_table_elements: 10_000,
            fuel_setup: 50_000_000,
            fuel_per_row: 50_000,
            deadline: Duration::from_secs(60),
            max_wasm_stack: 512 << 10,
            max_concurrent_runs: 16,
            metering: Metering::FuelAndEpoch,
        }
    }
}

/// A module that passed static review, compiled by this host, bound to its digest.
#[derive(Clone)]
pub struct CompiledModel {
    module: Module,
    manifest: Arc<Manifest>,
    digest: ModelDigest,
}

impl CompiledModel {
    pub fn digest(&self) -> ModelDigest {
        self.digest
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

impl std::fmt::Debug for CompiledModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModel").field("digest", &self.digest).finish_non_exhaustive()
    }
}

/// The process-wide runtime. Create one and share it; it is cheap to call concurrently.
pub struct Runtime {
    engine: Engine,
    limits: RuntimeLimits,
    _ticker: EpochTicker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("limits", &self.limits).finish_non_exhaustive()
    }
}

struct StoreState {
    limits: StoreLimits,
}

impl Runtime {
    pub fn new(limits: RuntimeLimits) -> Result<Self, SandboxError> {
        let engine =
            Engine::new(&engine_config(&limits)).map_err(|error| SandboxError::Engine(format!("{error:#}")))?;
        let ticker = EpochTicker::start(engine.clone(), limits.metering.epoch())?;
        Ok(Self { engine, limits, _ticker: ticker })
    }

    pub fn limits(&self) -> &RuntimeLimits {
        &self.limits
    }

    /// Static review and compilation. Only bytes compiled here are ever executed.
    pub fn compile(&self, module_bytes: &[u8], manifest: Manifest) -> Result<CompiledModel, SandboxError> {
        let (module, digest) = review_module(&self.engine, &self.limits, module_bytes, &manifest)?;
        Ok(CompiledModel { module, manifest: Arc::new(manifest), digest })
    }

    /// Instantiates `model` in a fresh store (ABI handshake and `sluice_reserve` included)
    /// and drops it: the fixed cost of every run, for benchmarks and health checks.
    pub fn instantiate(&self, model: &CompiledModel) -> Result<(), SandboxError> {
        GuestRun::start(self, model).map(drop)
    }

    /// Runs `model` over `batches` in a fresh store and returns its validated per-row outputs.
    pub fn run<B: Borrow<Batch>, E: std::fmt::Display>(
        &self,
        model: &CompiledModel,
        batches: impl Iterator<Item = Result<B, E>>,
    ) -> Result<ModelOutputs, SandboxError> {
        let mut run = GuestRun::start(self, model)?;
        let mut outputs = ModelOutputs::new(model.manifest.outputs().len());
        for batch in batches {
            let batch = batch.map_err(|error| SandboxError::Input(error.to_string()))?;
            run.map_batch(batch.borrow(), &self.limits, &mut outputs)?;
        }
        Ok(outputs)
    }
}

fn engine_config(limits: &RuntimeLimits) -> Config {
    let mut config = Config::new();
    config.consume_fuel(limits.metering.fuel());
    config.epoch_interruption(limits.metering.epoch());
    config.cranelift_opt_level(OptLevel::Speed);
    // Determinism: the same input and fuel give the same output on every host.
    config.cranelift_nan_canonicalization(false);
    config.relaxed_simd_deterministic(true);
    config.max_wasm_stack(limits.max_wasm_stack);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_memories(limits.max_concurrent_runs)
        .total_tables(limits.max_concurrent_runs)
        .total_core_instances(limits.max_concurrent_runs)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(limits.max_memory_bytes)
        .table_elements(limits.max_table_elements);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// One run's store and the guest's ABI entry points.
struct GuestRun<'model> {
    store: Store<StoreState>,
    memory: Memory,
    map: TypedFunc<(i32, i32, i32, i32), i32>,
    layout: BatchLayout,
    region: usize,
    model: &'model CompiledModel,
}

impl<'model> GuestRun<'model> {
    fn start(runtime: &Runtime, model: &'model CompiledModel) -> Result<Self, SandboxError> {
        let limits = &runtime.limits;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.max_memory_bytes)
            .table_elements(limits.max_table_elements)
            .instances(1)
            .tables(1)
            .memories(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&runtime.engine, StoreState { limits: store_limits });
        store.limiter(|state| &mut state.limits);
        if limits.metering.fuel() {
            store.set_fuel(limits.fuel_setup).map_err(engine_error)?;
        }
        if limits.metering.epoch() {
            let ticks = (limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }

        let instance = Instance::new(&mut store, &model.module, &[]).map_err(classify_instantiation)?;
        let abi_version: TypedFunc<(), i32> = typed(&instance, &mut store, EXPORT_ABI_VERSION)?;
        let declared = abi_version.call(&mut store, ()).map_err(classify_call)?;
        if declared != ABI_VERSION as i32 {
            return Err(SandboxError::AbiVersionMismatch { declared, expected: ABI_VERSION });
        }
        let reserve: TypedFunc<i32, i32> = typed(&instance, &mut store, EXPORT_RESERVE)?;
        let map = typed(&instance, &mut store, EXPORT_MAP)?;
        let memory = instance
            .get_memory(&mut store, EXPORT_MEMORY)
            .ok_or(SandboxError::MissingExport { name: EXPORT_MEMORY })?;

        let manifest = &model.manifest;
        let layout = BatchLayout::new(manifest.inputs().len(), manifest.outputs().len());
        let region_bytes = i32::try_from(layout.region_bytes())
            .map_err(|_| SandboxError::ResourceLimit("batch region exceeds 2 GiB".into()))?;
        let region = reserve.call(&mut store, region_bytes).map_err(classify_call)?;
        let run = Self { store, memory, map, layout, region: 0, model };
        let region = run.checked_region(region)?;
        Ok(Self { region, ..run })
    }

    /// The guest chose where the region lives, so its offset is untrusted input.
    fn checked_region(&self, region: i32) -> Result<usize, SandboxError> {
        let fits = usize::try_from(region).ok().filter(|start| {
            start % 8 == 0
                && start
                    .checked_add(self.layout.region_bytes())
                    .is_some_and(|end| end <= self.memory.data_size(&self.store))
        });
        fits.ok_or_else(|| SandboxError::Trap(format!("sluice_reserve returned an unusable region offset {region}")))
    }

    fn map_batch(
        &mut self,
        batch: &Batch,
        limits: &RuntimeLimits,
        outputs: &mut ModelOutputs,
    ) -> Result<(), SandboxError> {
        self.check_shape(batch)?;
        self.write_inputs(batch);
        if limits.metering.fuel() {
            let fuel = limits.fuel_per_row.saturating_mul(batch.rows as u64).max(limits.fuel_per_row);
            self.store.set_fuel(fuel).map_err(engine_error)?;
        }
        let layout = self.layout;
        let arguments = (self.region as i32, batch.rows as i32, layout.inputs as i32, layout.outputs as i32);
        let status = self.map.call(&mut self.store, arguments).map_err(classify_call)?;
        if status != 0 {
            return Err(SandboxError::ModelStatus(status));
        }
        self.read_outputs(batch.rows, outputs)?;
        if let Some(index) = self.model.manifest.group_by() {
            let column = &batch.columns[index];
            if let ColumnValues::I64(codes) = &column.values {
                outputs
                    .push_groups(codes.iter().zip(&column.valid).map(|(code, valid)| if *valid { *code } else { -1 }));
            }
        }
        Ok(())
    }

    fn check_shape(&self, batch: &Batch) -> Result<(), SandboxError> {
        let inputs = self.model.manifest.inputs();
        if batch.rows > self.layout.capacity || batch.columns.len() != inputs.len() {
            return Err(SandboxError::BatchShape(format!(
                "{} rows × {} columns, expected at most {} rows × {} columns",
                batch.rows,
                batch.columns.len(),
                self.layout.capacity,
                inputs.len()
            )));
        }
        for (column, input) in batch.columns.iter().zip(inputs) {
            let type_matches = matches!(
                (&column.values, input.column_type),
                (ColumnValues::F64(_), ColumnType::F64)
                    | (
                        ColumnValues::I64(_),
                        ColumnType::I64 | ColumnType::Category | ColumnType::Bool | ColumnType::Date
                    )
            );
            if !type_matches || column.values.len() != batch.rows || column.valid.len() != batch.rows {
                return Err(SandboxError::BatchShape(format!("column `{}` has the wrong type or length", input.name)));
            }
        }
        Ok(())
    }

    /// Writes the batch straight into the guest's region and zeroes the output area, so a
    /// model that writes nothing reads back zeros rather than the previous batch's values.
    fn write_inputs(&mut self, batch: &Batch) {
        let layout = self.layout;
        let start = self.region;
        let data = &mut self.memory.data_mut(&mut self.store)[start..start + layout.region_bytes()];
        for (index, column) in batch.columns.iter().enumerate() {
            let values = &mut data[layout.values_offset(index)..][..batch.rows * 8];
            match &column.values {
                ColumnValues::F64(source) => {
                    for (slot, value) in values.chunks_exact_mut(8).zip(source) {
                        slot.copy_from_slice(&value.to_le_bytes());
                    }
                }
                ColumnValues::I64(source) => {
                    for (slot, value) in values.chunks_exact_mut(8).zip(source) {
                        slot.copy_from_slice(&value.to_le_bytes());
                    }
                }
            }
            let validity = &mut data[layout.validity_offset(index)..][..batch.rows];
            for (slot, valid) in validity.iter_mut().zip(&column.valid) {
                *slot = u8::from(*valid);
            }
        }
        data[layout.outputs_offset()..].fill(0);
    }

    fn read_outputs(&self, rows: usize, outputs: &mut ModelOutputs) -> Result<(), SandboxError> {
        let layout = self.layout;
        // Memory never shrinks, so the region checked at reserve time is still in bounds.
        let data = &self.memory.data(&self.store)[self.region..self.region + layout.region_bytes()];
        let area = &data[layout.outputs_offset()..][..rows * layout.outputs * 8];
        // Column by column: one pass per output keeps each destination vector hot.
        for (index, spec) in self.model.manifest.outputs().iter().enumerate() {
            let column = outputs.column_mut(index);
            column.reserve(rows);
            for row in area.chunks_exact(layout.outputs * 8) {
                let bytes: [u8; 8] = row[index * 8..index * 8 + 8].try_into().expect("8-byte slot");
                let value = f64::from_le_bytes(bytes);
                if !value.is_finite() {
                    return Err(SandboxError::InvalidOutput {
                        output: spec.name.clone(),
                        detail: "value is NaN or infinite".into(),
                    });
                }
                column.push(value);
            }
        }
        outputs.add_rows(rows);
        Ok(())
    }
}

fn typed<Params, Results>(
    instance: &Instance,
    store: &mut Store<StoreState>,
    name: &'static str,
) -> Result<TypedFunc<Params, Results>, SandboxError>
where
    Params: wasmtime::WasmParams,
    Results: wasmtime::WasmResults,
{
    instance.get_typed_func(store, name).map_err(|_| SandboxError::MissingExport { name })
}

fn engine_error(error: wasmtime::Error) -> SandboxError {
    SandboxError::Engine(format!("{error:#}"))
}

fn classify_instantiation(error: wasmtime::Error) -> SandboxError {
    let text = format!("{error:#}");
    if text.contains("concurrent") || text.contains("maximum number") && text.contains("instances") {
        SandboxError::Busy
    } else if error.downcast_ref::<Trap>().is_some() {
        classify_call(error)
    } else {
        // Instantiation fails on limits the module asks past: memory, tables, elements.
        SandboxError::ResourceLimit(text)
    }
}

fn classify_call(error: wasmtime::Error) -> SandboxError {
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => SandboxError::ResourceLimit("fuel exhausted".into()),
        Some(Trap::Interrupt) => SandboxError::ResourceLimit("wall-clock deadline exceeded".into()),
        Some(Trap::StackOverflow) => SandboxError::ResourceLimit("stack overflow".into()),
        Some(trap) => SandboxError::Trap(trap.to_string()),
        None => {
            let text = format!("{error:#}");
            if text.contains("forcing trap when growing") || text.contains("growth failure") {
                SandboxError::ResourceLimit("memory or table growth past the cap".into())
            } else {
                SandboxError::Trap(text)
            }
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] so runs hit their wall-clock deadline.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, enabled: bool) -> Result<Self, SandboxError> {
        let stop = Arc::new(AtomicBool::new(false));
        if !enabled {
            return Ok(Self { stop, handle: None });
        }
        let stop_flag = Arc::clone(&stop);
        // Without the ticker no deadline would ever fire, so failing to start it is fatal.
        let handle = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|error| SandboxError::Engine(format!("starting the epoch ticker: {error}")))?;
        Ok(Self { stop, handle: Some(handle) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
