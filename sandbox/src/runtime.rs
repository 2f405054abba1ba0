//! The model runtime: one wasmtime `Engine` per process, a fresh `Store` per run.
//!
//! It owns engine configuration, limits, instantiation (the model and its driver, linked),
//! moving batches into the driver's memory, per-row failure handling and validating what
//! comes back. It must not aggregate, add noise or decide whether a run is allowed; it must
//! not give the guest any import but `emit` and pure math, nor any file, clock or randomness.

use std::borrow::Borrow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{
    Caller, Config, Engine, Extern, Func, Instance, InstanceAllocationStrategy, Memory, Module, OperatorCost, OptLevel,
    PoolingAllocationConfig, Ref, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc,
};

use crate::abi::{BATCH_ROWS, BatchLayout, EMIT_MODULE, EMIT_NAME, MATH_FUEL, MATH_MODULE, host_function, math_value};
use crate::batch::{Batch, ColumnValues, ModelOutputs, RowFailure};
use crate::driver::{DRIVER_EMIT, DRIVER_MEMORY, DRIVER_RUN, DRIVER_TABLE, driver_wat};
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
    /// Fuel for instantiating the model and its driver.
    pub fuel_setup: u64,
    /// The most fuel one row may use (about one unit per wasm instruction); a manifest may
    /// declare less. A row past it contributes its defaults.
    pub fuel_per_row: u64,
    /// Wall-clock backstop on each call into the guest, enforced by epoch interruption.
    /// Fuel bounds every row, so it fires only when the host itself stalls.
    pub deadline: Duration,
    pub max_wasm_stack: usize,
    /// Runs that may execute at once (pooling allocator slots).
    pub max_concurrent_runs: u32,
    /// Instances one run's rows are split across, each on its own thread with every limit
    /// above ([`Runtime::run_parts`]); the pool holds `max_concurrent_runs` ×
    /// `workers_per_run` runs' instances.
    pub workers_per_run: u32,
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
            workers_per_run: default_workers(),
            metering: Metering::FuelAndEpoch,
        }
    }
}

/// Takes a run's per-row outputs a batch at a time ([`Runtime::run_parts_into`]): what it
/// keeps of them is its own business (a streaming release keeps sufficient statistics).
pub trait OutputSink: Send {
    fn take(&mut self, outputs: &ModelOutputs);
}

/// The cores this machine offers, at most four: one run's parts.
fn default_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |cores| cores.get().min(4) as u32)
}

/// A module that passed static review, compiled by this host, bound to its digest, with
/// the driver generated for its row signature.
#[derive(Clone)]
pub struct CompiledModel {
    module: Module,
    driver: Module,
    manifest: Arc<Manifest>,
    digest: ModelDigest,
    binding: Arc<Binding>,
    /// The most fuel one row can use, from the code ([`crate::fuel`]); `None` when the
    /// code has a loop or recursion.
    fuel_bound: Option<u64>,
}

/// How the row function's parameters and emits map onto the manifest, by name.
#[derive(Debug)]
struct Binding {
    row_export: String,
    /// For each parameter (before the mask), the manifest input it reads.
    params: Vec<usize>,
    /// For each emit index, the manifest output it fills.
    outputs: Vec<usize>,
    /// For each manifest output, its default.
    defaults: Vec<f64>,
}

impl CompiledModel {
    pub fn digest(&self) -> ModelDigest {
        self.digest
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The most fuel one row of this model can use, read from its code and the driver's:
    /// `None` when the row function can loop or recurse (then only the declared fuel
    /// bounds a row).
    pub fn fuel_bound(&self) -> Option<u64> {
        self.fuel_bound
    }
    /// The names of the manifest inputs the row function actually reads.
    pub fn inputs_read(&self) -> Vec<&str> {
        self.binding.params.iter().map(|index| self.manifest.inputs()[*index].name.as_str()).collect()
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

    /// The fuel one row of `manifest`'s model may use: the manifest's, within the host's cap.
    pub fn fuel_per_row(&self, manifest: &Manifest) -> u64 {
        manifest.fuel_per_row().map_or(self.limits.fuel_per_row, |fuel| fuel.min(self.limits.fuel_per_row))
    }

    /// The fuel a row of `model` can use at most: its declared fuel within the host's cap,
    /// or the bound its code proves ([`CompiledModel::fuel_bound`]) if that is lower. What
    /// a run's visibility time is priced from.
    pub fn worst_fuel_per_row(&self, model: &CompiledModel) -> u64 {
        let declared = self.fuel_per_row(&model.manifest);
        model.fuel_bound.map_or(declared, |bound| bound.min(declared))
    }

    /// Static review and compilation. Only bytes compiled here are ever executed.
    pub fn compile(&self, module_bytes: &[u8], manifest: Manifest) -> Result<CompiledModel, SandboxError> {
        let reviewed = review_module(&self.engine, &self.limits, module_bytes, &manifest)?;
        let position_of_input = |name: &str| manifest.inputs().iter().position(|input| input.name == name);
        let position_of_output = |name: &str| manifest.outputs().iter().position(|output| output.name == name);
        // Review checked every name against the manifest, so each position exists.
        let params = reviewed.signature.inputs.iter().filter_map(|(name, _)| position_of_input(name)).collect();
        let outputs: Vec<usize> =
            reviewed.signature.outputs.iter().filter_map(|name| position_of_output(name)).collect();
        let defaults: Vec<f64> = manifest.outputs().iter().map(|output| output.fallback_value()).collect();
        let emitted_defaults: Vec<f64> = outputs.iter().map(|index| defaults[*index]).collect();
        let driver_text = driver_wat(&reviewed.signature, &emitted_defaults);
        let driver_bytes = wat::parse_str(&driver_text)
            .map_err(|error| SandboxError::Engine(format!("assembling the driver: {error}")))?;
        let driver = Module::new(&self.engine, &driver_bytes)
            .map_err(|error| SandboxError::Engine(format!("compiling the driver: {error:#}")))?;
        let driver_facts = crate::isolation::ModuleFacts::parse(&driver_bytes, &operator_costs())?;
        let fuel_bound = crate::fuel::row_bound(
            &reviewed.facts,
            &reviewed.row_export,
            &driver_facts,
            crate::driver::DRIVER_RUN,
            crate::driver::DRIVER_EMIT,
            MATH_FUEL,
        );
        let binding = Binding { row_export: reviewed.row_export, params, outputs, defaults };
        Ok(CompiledModel {
            module: reviewed.module,
            driver,
            manifest: Arc::new(manifest),
            digest: reviewed.digest,
            binding: Arc::new(binding),
            fuel_bound,
        })
    }

    /// Instantiates `model` and its driver in a fresh store and drops them: the fixed cost
    /// of every run, for benchmarks and health checks.
    pub fn instantiate(&self, model: &CompiledModel) -> Result<(), SandboxError> {
        GuestRun::start(self, model).map(drop)
    }

    /// Runs `model` over `batches` in a fresh store and returns its per-row outputs. A row
    /// the model fails on contributes its defaults (see [`ModelOutputs::fallbacks`]); only
    /// host faults, which do not depend on row values, fail the run.
    pub fn run<B: Borrow<Batch>, E: std::fmt::Display>(
        &self,
        model: &CompiledModel,
        batches: impl Iterator<Item = Result<B, E>>,
    ) -> Result<ModelOutputs, SandboxError> {
        let mut run = GuestRun::start(self, model)?;
        let mut outputs = ModelOutputs::new(model.manifest.outputs().len());
        for batch in batches {
            let batch = batch.map_err(|error| SandboxError::Input(error.to_string()))?;
            run.map_batch(batch.borrow(), &mut outputs)?;
        }
        Ok(outputs)
    }

    /// Runs `model` over consecutive `parts` of the rows at once, as [`Runtime::run_parts`]
    /// does, but hands each part's outputs to its sink a batch at a time instead of keeping
    /// them: a run's memory does not grow with its rows. Returns each part's sink with the
    /// rows it mapped and the rows that fell back, in part order.
    pub fn run_parts_into<I, B, E, S>(
        &self,
        model: &CompiledModel,
        parts: Vec<(I, S)>,
    ) -> Result<Vec<(S, usize, crate::Fallbacks)>, SandboxError>
    where
        I: Iterator<Item = Result<B, E>> + Send,
        B: Borrow<Batch>,
        E: std::fmt::Display,
        S: OutputSink,
    {
        // Every part, even a lone one, maps on a thread of its own: the caller may be an
        // async task, on whose thread the chunk reader's blocking reads must not run.
        let results: Vec<Result<(S, usize, crate::Fallbacks), SandboxError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = parts
                .into_iter()
                .map(|(batches, sink)| scope.spawn(move || self.map_part_into(model, batches, sink)))
                .collect();
            workers
                .into_iter()
                .map(|worker| {
                    worker.join().unwrap_or_else(|_| Err(SandboxError::Engine("a run's worker thread panicked".into())))
                })
                .collect()
        });
        results.into_iter().collect()
    }

    /// Maps one part of the rows in a store of its own, handing its outputs to `sink` a
    /// batch at a time; returns the sink, the rows mapped and the rows that fell back.
    fn map_part_into<I, B, E, S>(
        &self,
        model: &CompiledModel,
        batches: I,
        mut sink: S,
    ) -> Result<(S, usize, crate::Fallbacks), SandboxError>
    where
        I: Iterator<Item = Result<B, E>>,
        B: Borrow<Batch>,
        E: std::fmt::Display,
        S: OutputSink,
    {
        let mut run = GuestRun::start(self, model)?;
        let mut outputs = ModelOutputs::new(model.manifest.outputs().len());
        let mut rows = 0;
        for batch in batches {
            let batch = batch.map_err(|error| SandboxError::Input(error.to_string()))?;
            run.map_batch(batch.borrow(), &mut outputs)?;
            sink.take(&outputs);
            rows += outputs.rows();
            outputs.clear_rows();
        }
        Ok((sink, rows, outputs.fallbacks()))
    }

    /// Runs `model` over consecutive `parts` of the rows at once, each part in a store of
    /// its own on its own thread with every per-run limit, and joins their outputs in part
    /// order. Rows are independent (the isolation review proves it) and each row's fuel is
    /// its own, so the outputs are exactly [`Runtime::run`]'s over the parts one after the
    /// other; only a host fault, which does not depend on row values, fails the run (the
    /// first part's in order).
    pub fn run_parts<I, B, E>(&self, model: &CompiledModel, parts: Vec<I>) -> Result<ModelOutputs, SandboxError>
    where
        I: Iterator<Item = Result<B, E>> + Send,
        B: Borrow<Batch>,
        E: std::fmt::Display,
    {
        let outputs = model.manifest.outputs().len();
        let parts = parts.into_iter().map(|part| (part, KeepOutputs(ModelOutputs::new(outputs)))).collect();
        let mut joined = ModelOutputs::new(outputs);
        for (KeepOutputs(part), _, fallbacks) in self.run_parts_into(model, parts)? {
            joined.extend_rows(&part);
            joined.fallbacks_mut().add(fallbacks);
        }
        Ok(joined)
    }
}

/// The sink [`Runtime::run_parts`] keeps every row's outputs in.
struct KeepOutputs(ModelOutputs);

impl OutputSink for KeepOutputs {
    fn take(&mut self, outputs: &ModelOutputs) {
        self.0.extend_rows(outputs);
    }
}

/// The fuel each operator costs: the engine meters with this table and the fuel bound
/// ([`crate::fuel`]) prices code with it, so the two cannot disagree.
pub(crate) fn operator_costs() -> OperatorCost {
    OperatorCost::default()
}

fn engine_config(limits: &RuntimeLimits) -> Config {
    let mut config = Config::new();
    config.consume_fuel(limits.metering.fuel());
    config.operator_cost(operator_costs());
    config.epoch_interruption(limits.metering.epoch());
    config.cranelift_opt_level(OptLevel::Speed);
    // Determinism: the same input and fuel give the same output on every host.
    config.cranelift_nan_canonicalization(false);
    config.relaxed_simd_deterministic(true);
    config.max_wasm_stack(limits.max_wasm_stack);
    // Proposals that add state the isolation review does not model are refused by the
    // validator before review sees the module.
    use wasmparser::WasmFeatures as F;
    for feature in [
        F::THREADS,
        F::SHARED_EVERYTHING_THREADS,
        F::GC,
        F::FUNCTION_REFERENCES,
        F::EXCEPTIONS,
        F::LEGACY_EXCEPTIONS,
        F::MULTI_MEMORY,
        F::MEMORY64,
        F::STACK_SWITCHING,
    ] {
        config.wasm_features(feature, false);
    }
    let mut pool = PoolingAllocationConfig::default();
    // Each part of a run holds two instances: the model and its driver, with a memory and a
    // table each.
    let slots = limits.max_concurrent_runs.saturating_mul(limits.workers_per_run.max(1)).saturating_mul(2);
    pool.total_memories(slots)
        .total_tables(slots)
        .total_core_instances(slots)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(limits.max_memory_bytes)
        .table_elements(limits.max_table_elements);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Rows per driver call to start with; the size adapts to the fuel rows actually use.
const FIRST_BLOCK_ROWS: usize = 64;

/// One run's store: the model, its driver, and the driver's batch region.
struct GuestRun<'model> {
    store: Store<StoreState>,
    memory: Memory,
    run: TypedFunc<(i32, i32), ()>,
    layout: BatchLayout,
    model: &'model CompiledModel,
    limits: RuntimeLimits,
    fuel_per_row: u64,
    block_rows: usize,
}

impl<'model> GuestRun<'model> {
    fn start(runtime: &Runtime, model: &'model CompiledModel) -> Result<Self, SandboxError> {
        let limits = &runtime.limits;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.max_memory_bytes)
            .table_elements(limits.max_table_elements)
            .instances(2)
            .tables(2)
            .memories(2)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&runtime.engine, StoreState { limits: store_limits });
        store.limiter(|state| &mut state.limits);
        if limits.metering.fuel() {
            store.set_fuel(limits.fuel_setup).map_err(engine_error)?;
        }
        if limits.metering.epoch() {
            store.set_epoch_deadline(deadline_ticks(limits));
            store.epoch_deadline_trap();
        }

        let driver = Instance::new(&mut store, &model.driver, &[]).map_err(classify_instantiation)?;
        let emit = driver
            .get_func(&mut store, DRIVER_EMIT)
            .ok_or_else(|| SandboxError::Engine("the driver has no emit".into()))?;
        let charge_math = limits.metering.fuel();
        let mut imports: Vec<Extern> = Vec::new();
        for import in model.module.imports() {
            if import.module() == EMIT_MODULE && import.name() == EMIT_NAME {
                imports.push(emit.into());
            } else if import.module() == MATH_MODULE {
                imports.push(math_function(&mut store, import.name(), charge_math)?.into());
            } else {
                // Review refused every other import; reaching here means a review bug.
                return Err(SandboxError::ForbiddenImport {
                    module: import.module().into(),
                    name: import.name().into(),
                });
            }
        }
        let instance = Instance::new(&mut store, &model.module, &imports).map_err(classify_instantiation)?;
        let row = instance
            .get_func(&mut store, &model.binding.row_export)
            .ok_or(SandboxError::MissingExport { name: "sluice_row_v2(…)" })?;
        let table = driver
            .get_table(&mut store, DRIVER_TABLE)
            .ok_or_else(|| SandboxError::Engine("the driver has no table".into()))?;
        table
            .set(&mut store, 0, Ref::Func(Some(row)))
            .map_err(|error| SandboxError::Engine(format!("linking the row function into the driver: {error:#}")))?;
        let run = typed(&driver, &mut store, DRIVER_RUN)?;
        let memory = driver
            .get_memory(&mut store, DRIVER_MEMORY)
            .ok_or_else(|| SandboxError::Engine("the driver has no memory".into()))?;
        let layout = BatchLayout::new(model.binding.params.len(), model.binding.outputs.len());
        let fuel_per_row = runtime.fuel_per_row(&model.manifest);
        Ok(Self {
            store,
            memory,
            run,
            layout,
            model,
            limits: limits.clone(),
            fuel_per_row,
            block_rows: FIRST_BLOCK_ROWS,
        })
    }

    fn map_batch(&mut self, batch: &Batch, outputs: &mut ModelOutputs) -> Result<(), SandboxError> {
        self.check_shape(batch)?;
        self.write_inputs(batch);
        let failed = self.call_rows(batch.rows)?;
        self.read_outputs(batch.rows, &failed, outputs);
        if let Some(index) = self.model.manifest.group_by() {
            let column = &batch.columns[index];
            if let ColumnValues::I64(codes) = &column.values {
                outputs
                    .push_groups(codes.iter().zip(&column.valid).map(|(code, valid)| if *valid { *code } else { -1 }));
            }
        }
        Ok(())
    }

    /// Calls the row function on rows `0..rows` and returns, per row, why it failed if it did.
    ///
    /// Semantics: each row gets `fuel_per_row` fuel of its own, and a row that traps, runs
    /// out of fuel or overflows the stack fails alone. For speed, rows run in blocks that
    /// share one row's fuel: a block that completes proves that every row in it stayed
    /// within its own fuel, so its results are exactly the per-row ones. A block that
    /// fails is re-run row by row, which gives the per-row result for each (the row
    /// function is pure, so re-running it changes nothing). Block sizes only change speed.
    fn call_rows(&mut self, rows: usize) -> Result<Vec<Option<RowFailure>>, SandboxError> {
        let mut failed = vec![None; rows];
        if !self.limits.metering.fuel() {
            // Without fuel there is no per-row bound: one call maps the batch, and only the
            // wall-clock deadline stops a runaway model (benchmark configurations only).
            self.call(0, rows, 0).map_err(CallFailure::into_run_error)?;
            return Ok(failed);
        }
        let mut start = 0;
        while start < rows {
            let block = self.block_rows.min(rows - start);
            match self.call(start, start + block, self.fuel_per_row) {
                Ok(used) => {
                    // Aim the next block at half a row's fuel, so it rarely fails.
                    let per_row = (used / block as u64).max(1);
                    self.block_rows = ((self.fuel_per_row / 2 / per_row) as usize).clamp(1, BATCH_ROWS);
                }
                Err(CallFailure::Row(failure)) if block == 1 => failed[start] = Some(failure),
                Err(CallFailure::Row(_)) => {
                    for (row, slot) in failed.iter_mut().enumerate().skip(start).take(block) {
                        match self.call(row, row + 1, self.fuel_per_row) {
                            Ok(_) => {}
                            Err(CallFailure::Row(failure)) => *slot = Some(failure),
                            Err(other) => return Err(other.into_run_error()),
                        }
                    }
                    self.block_rows = (block / 4).max(1);
                }
                Err(other) => return Err(other.into_run_error()),
            }
            start += block;
        }
        Ok(failed)
    }

    /// One driver call over rows `start..end` with `fuel`; returns the fuel it used.
    fn call(&mut self, start: usize, end: usize, fuel: u64) -> Result<u64, CallFailure> {
        if self.limits.metering.fuel() {
            self.store.set_fuel(fuel).map_err(|error| CallFailure::Host(format!("setting fuel: {error:#}")))?;
        }
        if self.limits.metering.epoch() {
            self.store.set_epoch_deadline(deadline_ticks(&self.limits));
        }
        match self.run.call(&mut self.store, (start as i32, end as i32)) {
            Ok(()) => Ok(fuel.saturating_sub(self.store.get_fuel().unwrap_or(0))),
            Err(error) => Err(match error.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => CallFailure::Deadline,
                Some(Trap::OutOfFuel) => CallFailure::Row(RowFailure::Fuel),
                Some(Trap::StackOverflow) => CallFailure::Row(RowFailure::Stack),
                _ => CallFailure::Row(RowFailure::Trap),
            }),
        }
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

    /// Writes the batch into the driver's memory: one value array per row-function
    /// parameter and one presence mask per row. The model's memory never holds a row.
    fn write_inputs(&mut self, batch: &Batch) {
        let layout = self.layout;
        let data = &mut self.memory.data_mut(&mut self.store)[..layout.region_bytes()];
        let mut masks = vec![0u64; batch.rows];
        for (param, input_index) in self.model.binding.params.iter().enumerate() {
            let column = &batch.columns[*input_index];
            let values = &mut data[layout.values_offset(param)..][..batch.rows * 8];
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
            for (mask, valid) in masks.iter_mut().zip(&column.valid) {
                *mask |= u64::from(*valid) << param;
            }
        }
        let mask_area = &mut data[layout.mask_offset()..][..batch.rows * 8];
        for (slot, mask) in mask_area.chunks_exact_mut(8).zip(&masks) {
            slot.copy_from_slice(&mask.to_le_bytes());
        }
    }

    /// Reads each row's outputs back in manifest order. A row that failed, or emitted a
    /// non-finite value, contributes every output's default instead.
    fn read_outputs(&mut self, rows: usize, failed: &[Option<RowFailure>], outputs: &mut ModelOutputs) {
        let layout = self.layout;
        let binding = &self.model.binding;
        let data = &self.memory.data(&self.store)[..layout.region_bytes()];
        let area = &data[layout.outputs_offset()..][..rows * layout.outputs * 8];
        let value_at = |row: usize, emit: usize| {
            let at = (row * layout.outputs + emit) * 8;
            f64::from_le_bytes(area[at..at + 8].try_into().expect("8-byte slot"))
        };
        let mut usable = vec![true; rows];
        for (row, failure) in failed.iter().enumerate() {
            let failure = failure.or_else(|| {
                (0..layout.outputs).any(|emit| !value_at(row, emit).is_finite()).then_some(RowFailure::NonFinite)
            });
            if let Some(failure) = failure {
                usable[row] = false;
                outputs.fallbacks_mut().record(failure);
            }
        }
        for (emit, output_index) in binding.outputs.iter().enumerate() {
            let default = binding.defaults[*output_index];
            let column = outputs.column_mut(*output_index);
            column.reserve(rows);
            column.extend((0..rows).map(|row| if usable[row] { value_at(row, emit) } else { default }));
        }
        outputs.add_rows(rows);
    }
}

/// How one driver call ended badly.
#[derive(Debug)]
enum CallFailure {
    /// A row trapped, ran out of fuel or overflowed the stack.
    Row(RowFailure),
    /// The wall-clock backstop fired: a host fault, since fuel bounds every row.
    Deadline,
    /// The engine refused a host-side step; nothing about the rows.
    Host(String),
}

impl CallFailure {
    /// The run-level error for a failure that is not one row's.
    fn into_run_error(self) -> SandboxError {
        match self {
            CallFailure::Deadline => deadline_error(),
            CallFailure::Host(detail) => SandboxError::Engine(detail),
            CallFailure::Row(failure) => {
                SandboxError::ResourceLimit(format!("a row failed ({failure:?}) with fuel metering off"))
            }
        }
    }
}

fn deadline_error() -> SandboxError {
    SandboxError::ResourceLimit("wall-clock deadline exceeded".into())
}

fn deadline_ticks(limits: &RuntimeLimits) -> u64 {
    (limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// A host math function, charged [`MATH_FUEL`] per call so fuel still bounds a row's time.
fn math_function(store: &mut Store<StoreState>, name: &str, charge: bool) -> Result<Func, SandboxError> {
    let function = host_function(MATH_MODULE, name)
        .ok_or_else(|| SandboxError::ForbiddenImport { module: MATH_MODULE.into(), name: name.into() })?;
    let name = function.name;
    let pay = move |caller: &mut Caller<'_, StoreState>| {
        if charge {
            let left = caller.get_fuel().unwrap_or(0);
            let _ = caller.set_fuel(left.saturating_sub(MATH_FUEL));
        }
    };
    Ok(if function.params.len() == 2 {
        Func::wrap(&mut *store, move |mut caller: Caller<'_, StoreState>, x: f64, y: f64| -> f64 {
            pay(&mut caller);
            math_value(name, x, y)
        })
    } else {
        Func::wrap(&mut *store, move |mut caller: Caller<'_, StoreState>, x: f64| -> f64 {
            pay(&mut caller);
            math_value(name, x, 0.0)
        })
    })
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
