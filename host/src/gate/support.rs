//! The support component `keyhost gate build` generates for each gate: a
//! core module made with wasm-encoder, whose memory holds the settings and
//! the registry snapshot as a data segment, turned into a component of the
//! `support` world (gate/wit/gate.wit) by wit-component.
//!
//! A data segment is what makes a fresh instance cheap at any number of
//! keys: wasmtime maps it copy-on-write from the compiled image rather than
//! copying it, and the gate reads it in place, with no parsing. Its
//! functions only hand out slices of that memory, or empty answers.

use anyhow::{Context, Result};
use wasm_encoder::{
    CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function, FunctionSection,
    Instruction, MemArg, MemorySection, MemoryType, Module, TypeSection, ValType,
};
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::{Resolve, WorldId};

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
    let mut module = core_module(settings, snapshot)?;
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

fn core_module(settings: &[u8], snapshot: &[u8]) -> Result<Vec<u8>> {
    let snapshot_at = (SETTINGS_AT + settings.len() as u64).next_multiple_of(8);
    let end = snapshot_at + snapshot.len() as u64;
    let pages = end.div_ceil(PAGE).max(1);
    anyhow::ensure!(
        end <= u64::from(u32::MAX),
        "the snapshot ({} bytes) does not fit a 32-bit memory",
        snapshot.len()
    );
    let snapshot_len = snapshot.len() as i64;

    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]); // 0: () -> pointer
    types.ty().function([], [ValType::I64]); // 1: () -> u64
    types
        .ty()
        .function([ValType::I64, ValType::I32], [ValType::I32]); // 2: (offset, len) -> pointer
    types.ty().function([ValType::I32], []); // 3: (status) -> ()

    let store = |at: i32| MemArg {
        offset: at as u64,
        align: 2,
        memory_index: 0,
    };
    let zeros = || {
        let mut f = Function::new([]);
        f.instruction(&Instruction::I32Const(ZEROS_AT));
        f.instruction(&Instruction::End);
        f
    };
    let trap = || {
        let mut f = Function::new([]);
        f.instruction(&Instruction::Unreachable);
        f.instruction(&Instruction::End);
        f
    };
    let settings_fn = {
        let mut f = Function::new([]);
        for (at, value) in [(0, SETTINGS_AT as i32), (4, settings.len() as i32)] {
            f.instruction(&Instruction::I32Const(0));
            f.instruction(&Instruction::I32Const(value));
            f.instruction(&Instruction::I32Store(store(RETURN_AT + at)));
        }
        f.instruction(&Instruction::I32Const(RETURN_AT));
        f.instruction(&Instruction::End);
        f
    };
    let snapshot_len_fn = {
        let mut f = Function::new([]);
        f.instruction(&Instruction::I64Const(snapshot_len));
        f.instruction(&Instruction::End);
        f
    };
    // start = min(offset, len); count = min(asked, len - start), unsigned.
    let snapshot_fn = {
        let (offset, asked, start, count, asked_wide) = (0, 1, 2, 3, 4);
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
            Instruction::I64Const(snapshot_len),
        );
        f.instruction(&Instruction::LocalSet(start));
        f.instruction(&Instruction::I64Const(snapshot_len));
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
        f.instruction(&Instruction::I32Const(snapshot_at as i32));
        f.instruction(&Instruction::I32Add);
        f.instruction(&Instruction::I32Store(store(RETURN_AT)));
        f.instruction(&Instruction::I32Const(0));
        f.instruction(&Instruction::LocalGet(count));
        f.instruction(&Instruction::I32WrapI64);
        f.instruction(&Instruction::I32Store(store(RETURN_AT + 4)));
        f.instruction(&Instruction::I32Const(RETURN_AT));
        f.instruction(&Instruction::End);
        f
    };

    let cli = "wasi:cli";
    let v = "@0.2.12";
    let functions: Vec<(String, u32, Function)> = vec![
        ("keyhost:gate/data@0.1.0#settings".into(), 0, settings_fn),
        (
            "keyhost:gate/data@0.1.0#snapshot-len".into(),
            1,
            snapshot_len_fn,
        ),
        ("keyhost:gate/data@0.1.0#snapshot".into(), 2, snapshot_fn),
        (format!("{cli}/environment{v}#get-environment"), 0, zeros()),
        (format!("{cli}/environment{v}#get-arguments"), 0, zeros()),
        (format!("{cli}/environment{v}#initial-cwd"), 0, zeros()),
        (format!("{cli}/exit{v}#exit"), 3, trap()),
        (format!("{cli}/exit{v}#exit-with-code"), 3, trap()),
        (
            format!("{cli}/terminal-stdin{v}#get-terminal-stdin"),
            0,
            zeros(),
        ),
        (
            format!("{cli}/terminal-stdout{v}#get-terminal-stdout"),
            0,
            zeros(),
        ),
        (
            format!("{cli}/terminal-stderr{v}#get-terminal-stderr"),
            0,
            zeros(),
        ),
    ];

    let mut function_section = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    for (index, (name, ty, body)) in functions.iter().enumerate() {
        function_section.function(*ty);
        exports.export(name, ExportKind::Func, index as u32);
        code.function(body);
    }
    exports.export("memory", ExportKind::Memory, 0);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: Some(pages),
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut data = DataSection::new();
    data.active(
        0,
        &ConstExpr::i32_const(SETTINGS_AT as i32),
        settings.iter().copied(),
    );
    data.active(
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
        .section(&data);
    Ok(module.finish())
}
