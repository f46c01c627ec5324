//! The support component `keyhost gate build` generates for each gate: a
//! core module made with wasm-encoder, whose memory holds the settings and
//! the registry snapshot as a data segment, turned into a component of the
//! `support` world (gate/wit/gate.wit) by wit-component.
//!
//! A data segment is what makes a fresh instance cheap at any number of
//! keys: wasmtime maps it copy-on-write from the compiled image rather than
//! copying it, and the gate reads it in place, with no parsing. Its
//! functions only hand out slices of that memory, answer "nothing", or trap
//! (the WASI parts a proxy host lacks; see the `support` world).

use anyhow::{Context, Result};
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function, FunctionSection,
    Instruction, MemArg, MemorySection, MemoryType, Module, TypeSection, ValType,
};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::abi::{AbiVariant, WasmSignature, WasmType};
use wit_parser::{Resolve, WorldId, WorldItem};

/// The WIT the gate is built against, with its dependencies in the order
/// they depend on each other.
const WIT: &[(&str, &str)] = &[
    ("io.wit", include_str!("../../../gate/wit/deps/io.wit")),
    (
        "clocks.wit",
        include_str!("../../../gate/wit/deps/clocks.wit"),
    ),
    (
        "random.wit",
        include_str!("../../../gate/wit/deps/random.wit"),
    ),
    (
        "filesystem.wit",
        include_str!("../../../gate/wit/deps/filesystem.wit"),
    ),
    (
        "sockets.wit",
        include_str!("../../../gate/wit/deps/sockets.wit"),
    ),
    ("cli.wit", include_str!("../../../gate/wit/deps/cli.wit")),
    ("http.wit", include_str!("../../../gate/wit/deps/http.wit")),
    (
        "http-app.wit",
        include_str!("../../../gate/wit/deps/http-app.wit"),
    ),
    ("policy.wit", include_str!("../../../wit/policy.wit")),
    ("gate.wit", include_str!("../../../gate/wit/gate.wit")),
];

/// Where the answers of functions that return nothing live: never written.
const ZEROS_AT: i32 = 0;
/// Where a function that returns a slice writes its (pointer, length).
const RETURN_AT: i32 = 16;
/// Where the settings start; the snapshot follows, 8-aligned.
const SETTINGS_AT: u64 = 32;
const PAGE: u64 = 65_536;

/// The support component holding `settings` (JSON) and `snapshot`.
pub fn component(settings: &[u8], snapshot: &[u8]) -> Result<Vec<u8>> {
    let (resolve, world) = support_world()?;
    let mut module = core_module(&resolve, world, settings, snapshot)?;
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .context("embedding the support world")?;
    ComponentEncoder::default()
        .module(&module)
        .context("reading the support module")?
        .validate(true)
        .encode()
        .context("encoding the support component")
}

fn support_world() -> Result<(Resolve, WorldId)> {
    let mut resolve = Resolve::default();
    let mut last = None;
    for (name, text) in WIT {
        last = Some(
            resolve
                .push_str(name, text)
                .with_context(|| format!("parsing the gate's WIT ({name})"))?,
        );
    }
    let world = resolve.select_world(&[last.expect("gate.wit")], Some("support"))?;
    Ok((resolve, world))
}

/// The functions that answer "nothing": an empty list or `none`, whose
/// answer lives in memory that is never written.
const EMPTY_ANSWERS: [&str; 7] = [
    "wasi:cli/environment@0.2.12#get-environment",
    "wasi:cli/environment@0.2.12#get-arguments",
    "wasi:cli/environment@0.2.12#initial-cwd",
    "wasi:cli/terminal-stdin@0.2.12#get-terminal-stdin",
    "wasi:cli/terminal-stdout@0.2.12#get-terminal-stdout",
    "wasi:cli/terminal-stderr@0.2.12#get-terminal-stderr",
    "wasi:filesystem/preopens@0.2.12#get-directories",
];

/// The core module: every function the support world exports, with the
/// core signature wit-parser gives it. The data functions hand out slices
/// of the data segment; the empty answers point at zeros; the rest trap.
fn core_module(
    resolve: &Resolve,
    world: WorldId,
    settings: &[u8],
    snapshot: &[u8],
) -> Result<Vec<u8>> {
    let snapshot_at = (SETTINGS_AT + settings.len() as u64).next_multiple_of(8);
    let end = snapshot_at + snapshot.len() as u64;
    let pages = end.div_ceil(PAGE).max(1);
    anyhow::ensure!(
        end <= u64::from(u32::MAX),
        "the snapshot ({} bytes) does not fit a 32-bit memory",
        snapshot.len()
    );
    let data = Data {
        settings_len: settings.len() as i32,
        snapshot_at: snapshot_at as i32,
        snapshot_len: snapshot.len() as i64,
    };

    let mut functions: Vec<(String, WasmSignature)> = Vec::new();
    for (key, item) in &resolve.worlds[world].exports {
        let WorldItem::Interface { id, .. } = item else {
            continue;
        };
        let interface = resolve.name_world_key(key);
        for function in resolve.interfaces[*id].functions.values() {
            functions.push((
                format!("{interface}#{}", function.name),
                resolve.wasm_signature(AbiVariant::GuestExport, function),
            ));
        }
    }

    let mut types = TypeSection::new();
    let mut type_of: Vec<(Vec<ValType>, Vec<ValType>)> = Vec::new();
    let mut function_section = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    let mut add = |name: &str, params: Vec<ValType>, results: Vec<ValType>, body: Function| {
        let signature = (params, results);
        let ty = match type_of.iter().position(|known| *known == signature) {
            Some(ty) => ty,
            None => {
                types
                    .ty()
                    .function(signature.0.iter().copied(), signature.1.iter().copied());
                type_of.push(signature);
                type_of.len() - 1
            }
        };
        let index = function_section.len();
        function_section.function(ty as u32);
        exports.export(name, ExportKind::Func, index);
        code.function(&body);
    };
    for (name, signature) in &functions {
        let params: Vec<ValType> = signature.params.iter().map(val_type).collect();
        let results: Vec<ValType> = signature.results.iter().map(val_type).collect();
        let body = match name.as_str() {
            "keyhost:gate/data@0.1.0#settings" => data.settings(),
            "keyhost:gate/data@0.1.0#snapshot-len" => data.snapshot_len(),
            "keyhost:gate/data@0.1.0#snapshot" => data.snapshot(),
            empty if EMPTY_ANSWERS.contains(&empty) => {
                anyhow::ensure!(
                    results == [ValType::I32],
                    "{empty} does not answer through memory"
                );
                returning(Instruction::I32Const(ZEROS_AT))
            }
            _ => trap(),
        };
        add(name, params, results, body);
    }
    // Arguments that are lists or strings are written into this module's
    // memory through its allocator. Nothing here takes any: it traps.
    add(
        "cabi_realloc",
        vec![ValType::I32; 4],
        vec![ValType::I32],
        trap(),
    );

    exports.export("memory", ExportKind::Memory, 0);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: Some(pages),
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut data_section = DataSection::new();
    data_section.active(
        0,
        &ConstExpr::i32_const(SETTINGS_AT as i32),
        settings.iter().copied(),
    );
    data_section.active(
        0,
        &ConstExpr::i32_const(snapshot_at as i32),
        snapshot.iter().copied(),
    );

    let mut module = Module::new();
    module
        .section(&types)
        .section(&function_section)
        .section(&memories)
        .section(&exports)
        .section(&code)
        .section(&data_section);
    Ok(module.finish())
}

fn val_type(ty: &WasmType) -> ValType {
    match ty {
        WasmType::I32 | WasmType::Pointer | WasmType::Length => ValType::I32,
        WasmType::I64 | WasmType::PointerOrI64 => ValType::I64,
        WasmType::F32 => ValType::F32,
        WasmType::F64 => ValType::F64,
    }
}

fn trap() -> Function {
    let mut f = Function::new([]);
    f.instruction(&Instruction::Unreachable);
    f.instruction(&Instruction::End);
    f
}

fn returning(value: Instruction<'static>) -> Function {
    let mut f = Function::new([]);
    f.instruction(&value);
    f.instruction(&Instruction::End);
    f
}

/// Where the settings and the snapshot lie in memory.
struct Data {
    settings_len: i32,
    snapshot_at: i32,
    snapshot_len: i64,
}

impl Data {
    fn store(at: i32) -> MemArg {
        MemArg {
            offset: at as u64,
            align: 2,
            memory_index: 0,
        }
    }

    /// `settings() -> list<u8>`: (pointer, length) at RETURN_AT.
    fn settings(&self) -> Function {
        let mut f = Function::new([]);
        for (at, value) in [(0, SETTINGS_AT as i32), (4, self.settings_len)] {
            f.instruction(&Instruction::I32Const(0));
            f.instruction(&Instruction::I32Const(value));
            f.instruction(&Instruction::I32Store(Self::store(RETURN_AT + at)));
        }
        f.instruction(&Instruction::I32Const(RETURN_AT));
        f.instruction(&Instruction::End);
        f
    }

    fn snapshot_len(&self) -> Function {
        returning(Instruction::I64Const(self.snapshot_len))
    }

    /// `snapshot(offset, len) -> list<u8>`: start = min(offset, total),
    /// count = min(len, total - start), unsigned; (pointer, count) at
    /// RETURN_AT.
    fn snapshot(&self) -> Function {
        let (offset, asked, start, count, asked_wide) = (0, 1, 2, 3, 4);
        let total = self.snapshot_len;
        let mut f = Function::new([(3, ValType::I64)]);
        let min_u = |f: &mut Function, a: Instruction<'static>, b: Instruction<'static>| {
            f.instruction(&a);
            f.instruction(&b);
            f.instruction(&a);
            f.instruction(&b);
            f.instruction(&Instruction::I64LtU);
            f.instruction(&Instruction::Select);
        };
        min_u(
            &mut f,
            Instruction::LocalGet(offset),
            Instruction::I64Const(total),
        );
        f.instruction(&Instruction::LocalSet(start));
        f.instruction(&Instruction::I64Const(total));
        f.instruction(&Instruction::LocalGet(start));
        f.instruction(&Instruction::I64Sub);
        f.instruction(&Instruction::LocalSet(count));
        f.instruction(&Instruction::LocalGet(asked));
        f.instruction(&Instruction::I64ExtendI32U);
        f.instruction(&Instruction::LocalSet(asked_wide));
        min_u(
            &mut f,
            Instruction::LocalGet(asked_wide),
            Instruction::LocalGet(count),
        );
        f.instruction(&Instruction::LocalSet(count));
        f.instruction(&Instruction::I32Const(0));
        f.instruction(&Instruction::LocalGet(start));
        f.instruction(&Instruction::I32WrapI64);
        f.instruction(&Instruction::I32Const(self.snapshot_at));
        f.instruction(&Instruction::I32Add);
        f.instruction(&Instruction::I32Store(Self::store(RETURN_AT)));
        f.instruction(&Instruction::I32Const(0));
        f.instruction(&Instruction::LocalGet(count));
        f.instruction(&Instruction::I32WrapI64);
        f.instruction(&Instruction::I32Store(Self::store(RETURN_AT + 4)));
        f.instruction(&Instruction::I32Const(RETURN_AT));
        f.instruction(&Instruction::End);
        f
    }
}
