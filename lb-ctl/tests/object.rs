//! The eBPF object as built (`lb_ctl::dataplane::object`), read as an ELF
//! file: what its programs call.
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

/// Functions that LLVM calls when it does not write a memory operation in
/// place. In a BPF object they are compiler-builtins' byte-by-byte loops:
/// every zeroing of a key was such a call (twice per IPv4 packet in the
/// parser) until the build passed `--disable-expand-memcpy-in-order` to
/// bpf-linker (lb-ebpf/ebpf_build.rs).
const MEMORY_BUILTINS: [&str; 5] = ["memset", "memcpy", "memmove", "memcmp", "bcmp"];

#[test]
fn no_program_calls_a_memory_builtin() {
    let file = object::File::parse(lb_ctl::dataplane::object()).expect("the eBPF object is ELF");
    let mut calls = Vec::new();
    let mut relocations = 0;
    for section in file.sections() {
        for (offset, relocation) in section.relocations() {
            relocations += 1;
            let RelocationTarget::Symbol(index) = relocation.target() else {
                continue;
            };
            let symbol = file.symbol_by_index(index).expect("relocation symbol");
            let name = symbol.name().expect("symbol name");
            if MEMORY_BUILTINS.contains(&name) {
                calls.push(format!(
                    "{} + {offset:#x} calls {name}",
                    section.name().unwrap_or("?")
                ));
            }
        }
    }
    // The reader did see the object's relocations (map references, calls
    // between functions), so an empty list means something.
    assert!(relocations > 10, "only {relocations} relocations read");
    assert!(calls.is_empty(), "{}", calls.join("\n"));
}
