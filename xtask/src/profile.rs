//! `cargo xtask bench WHICH --profile ...`: the benchmark run under
//! `perf record -e cpu-clock -a`, and a report of where each of lb's XDP
//! programs spent its samples, by source line.
//!
//! This VM has no hardware counters, but cpu-clock samples JIT-compiled
//! programs too: each function of a program is a kernel symbol
//! `bpf_prog_<tag>_<name>`, and perf gives a sample's offset in it. While the
//! benchmark runs, a thread asks the kernel for every loaded `lb_*` program's
//! functions (their tags, addresses and lengths) and line info: the JIT
//! address and the source line (file, line, text from the program's BTF) of
//! each line record. A sample falls after one of those addresses in its
//! function; that record's line gets it. A cold load shows as one line that
//! holds most of its program's samples (docs/benchmarks.md, "Finding where
//! the time goes").
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader},
    os::fd::{FromRawFd as _, OwnedFd},
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

/// Samples per second per CPU.
const FREQUENCY: &str = "20000";
/// How often the loaded programs are looked at (a program the benchmark
/// loads and unloads in between is missed; every phase here lasts seconds).
const POLL: Duration = Duration::from_millis(500);
/// Lines shown per program.
const TOP_LINES: usize = 25;
/// Symbols shown (kernel and user space, programs among them).
const TOP_SYMBOLS: usize = 30;
/// Programs looked at: lb's own.
const PREFIX: &str = "lb_";

/// Runs `bench` (a command whose child processes load the programs) under
/// perf, then writes and prints the report to `report`.
pub fn run(bench: &mut Command, data: &Path, report: &Path) -> Result<()> {
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let done = done.clone();
        thread::spawn(move || {
            let mut functions = Functions::default();
            while !done.load(Ordering::Relaxed) {
                functions.look();
                thread::sleep(POLL);
            }
            functions.look();
            functions
        })
    };
    let mut perf = Command::new("perf");
    perf.args([
        "record",
        "-e",
        "cpu-clock",
        "-F",
        FREQUENCY,
        "-a",
        "-q",
        "-o",
    ])
    .arg(data)
    .arg("--")
    .arg(bench.get_program())
    .args(bench.get_args());
    if let Some(dir) = bench.get_current_dir() {
        perf.current_dir(dir);
    }
    let status = perf
        .status()
        .context("could not start perf (is linux-perf installed?)");
    done.store(true, Ordering::Relaxed);
    let functions = poller
        .join()
        .map_err(|_| anyhow::anyhow!("the program poller panicked"))?;
    let status = status?;
    if !status.success() {
        bail!("the benchmark under perf failed ({status})");
    }
    // Read as it comes: a whole bench's samples are millions of lines.
    let mut script = Command::new("perf")
        .args(["script", "-F", "ip,sym,symoff", "-i"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("could not start perf script")?;
    let mut tally = Tally::default();
    let stdout = script.stdout.take().context("perf script's output")?;
    for line in BufReader::new(stdout).lines() {
        tally.add(&functions, &line.context("reading perf script's output")?);
    }
    let status = script.wait().context("waiting for perf script")?;
    if !status.success() {
        bail!("perf script -i {} failed ({status})", data.display());
    }
    let text = render(&functions, &tally);
    fs::write(report, &text).with_context(|| format!("writing {}", report.display()))?;
    println!("{text}");
    println!("[bench] profile written to {}", report.display());
    Ok(())
}

/// One source line of a program.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Line {
    file: String,
    line: u32,
    text: String,
}

/// One JIT-compiled function: its program and its line records (offset in
/// the function, index into `lines`), by offset.
struct Function {
    program: String,
    records: Vec<(u64, usize)>,
}

/// Every function seen, by tag (the tag names the code: the same code
/// loaded twice has the same tag and the same records).
#[derive(Default)]
struct Functions {
    by_tag: HashMap<[u8; 8], Function>,
    lines: Vec<Line>,
    line_index: HashMap<Line, usize>,
    /// Program ids looked at (lb's or not, read or not).
    programs_seen: HashSet<u32>,
    errors: Vec<String>,
}

impl Functions {
    /// Records the functions of every loaded `lb_*` program not seen yet.
    fn look(&mut self) {
        let mut id = 0;
        while let Some(next) = bpf::next_program_id(id) {
            id = next;
            // Each program is asked once: one unloaded between the two
            // calls, or not readable, is not asked again.
            if !self.programs_seen.insert(id) {
                continue;
            }
            match bpf::program(id) {
                Ok(Some(program)) => self.add(program),
                Ok(None) => {}
                Err(err) => self.errors.push(format!("program {id}: {err:#}")),
            }
        }
    }

    fn add(&mut self, program: bpf::Program) {
        for (index, function) in program.functions.iter().enumerate() {
            if self.by_tag.contains_key(&function.tag) {
                continue;
            }
            let end = function.start + u64::from(function.len);
            let mut records: Vec<(u64, usize)> = program
                .records
                .iter()
                .filter(|record| (function.start..end).contains(&record.address))
                .map(|record| {
                    let line = Line {
                        file: record.file.clone(),
                        line: record.line,
                        text: record.text.clone(),
                    };
                    let at = *self.line_index.entry(line.clone()).or_insert_with(|| {
                        self.lines.push(line);
                        self.lines.len() - 1
                    });
                    (record.address - function.start, at)
                })
                .collect();
            records.sort();
            let name = if index == 0 {
                program.name.clone()
            } else {
                format!("{} (function {index})", program.name)
            };
            self.by_tag.insert(
                function.tag,
                Function {
                    program: name,
                    records,
                },
            );
        }
    }
}

/// The samples counted: all, by symbol, and by program and source line.
#[derive(Default)]
struct Tally {
    total: u64,
    /// Samples in BPF functions not seen while loaded.
    other_bpf: u64,
    by_symbol: HashMap<String, u64>,
    /// Function (by program name) -> line index (None: before the first
    /// record) -> samples.
    counts: BTreeMap<String, HashMap<Option<usize>, u64>>,
}

impl Tally {
    /// Counts one line of `perf script -F ip,sym,symoff`.
    fn add(&mut self, functions: &Functions, sample: &str) {
        self.total += 1;
        let name = symbol(sample);
        match self.by_symbol.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                self.by_symbol.insert(name.to_owned(), 1);
            }
        }
        let Some((tag, offset)) = jit_sample(sample) else {
            return;
        };
        let Some(function) = functions.by_tag.get(&tag) else {
            self.other_bpf += 1;
            return;
        };
        let at = function
            .records
            .partition_point(|&(start, _)| start <= offset)
            .checked_sub(1)
            .map(|i| function.records[i].1);
        *self
            .counts
            .entry(function.program.clone())
            .or_default()
            .entry(at)
            .or_default() += 1;
    }
}

/// The report: every sampled function of lb's programs, its share of all
/// samples, its lines by samples.
fn render(functions: &Functions, tally: &Tally) -> String {
    let Tally {
        total,
        other_bpf,
        by_symbol,
        counts,
    } = tally;
    let (total, other_bpf) = (*total, *other_bpf);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "profile: {total} cpu-clock samples on all CPUs ({FREQUENCY} Hz each); share of all samples and, per line, of the function's"
    );
    let _ = writeln!(
        out,
        "  (the sampling's interrupts inflate this run's figures, the means most: compare figures of runs without --profile)"
    );
    if other_bpf > 0 {
        let _ = writeln!(
            out,
            "  {other_bpf} samples in BPF functions not seen while loaded (loaded and gone between two looks, or not lb's)"
        );
    }
    for err in &functions.errors {
        let _ = writeln!(out, "  not read: {err}");
    }
    // The kernel's own functions show beside the programs: the map
    // lookups a program calls (a hash table's walk, `memcmp` of its key)
    // are theirs, not the program's.
    let mut symbols: Vec<(&str, u64)> = by_symbol.iter().map(|(k, &n)| (k.as_str(), n)).collect();
    symbols.sort_by_key(|&(name, n)| (std::cmp::Reverse(n), name));
    let _ = writeln!(out, "\nsymbols, all samples:");
    for (name, n) in symbols.into_iter().take(TOP_SYMBOLS) {
        let _ = writeln!(out, "  {n:7} {:5.2} %  {name}", percent(n, total));
    }
    let mut ordered: Vec<_> = counts.iter().collect();
    ordered.sort_by_key(|(_, lines)| std::cmp::Reverse(lines.values().sum::<u64>()));
    for (program, lines) in ordered {
        let samples: u64 = lines.values().sum();
        let _ = writeln!(
            out,
            "\n{program}: {samples} samples, {:.2} % of all",
            percent(samples, total)
        );
        let mut by_samples: Vec<_> = lines.iter().collect();
        by_samples.sort_by_key(|&(at, n)| (std::cmp::Reverse(*n), *at));
        for (at, n) in by_samples.into_iter().take(TOP_LINES) {
            let place = match at {
                Some(at) => {
                    let line = &functions.lines[*at];
                    format!("{}:{}  {}", line.file, line.line, line.text)
                }
                None => "(before the first line record)".to_owned(),
            };
            let _ = writeln!(out, "  {n:7} {:5.1} %  {place}", percent(*n, samples));
        }
    }
    out
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The symbol of a `perf script -F ip,sym,symoff` line, without its
/// offset.
fn symbol(line: &str) -> &str {
    let sym = line.split_whitespace().nth(1).unwrap_or("[unknown]");
    sym.rsplit_once("+0x").map_or(sym, |(name, _)| name)
}

/// The function tag and offset of a `perf script -F ip,sym,symoff` line
/// (`<ip> <symbol>+0x<offset>`) in a JIT-compiled BPF function, whose
/// symbol is `bpf_prog_<16 hex digits>_<name>`.
fn jit_sample(line: &str) -> Option<([u8; 8], u64)> {
    let sym = line
        .split_whitespace()
        .find_map(|token| token.strip_prefix("bpf_prog_"))?;
    let (hex, rest) = sym.split_at_checked(16)?;
    let (_, offset) = rest.strip_prefix('_')?.rsplit_once("+0x")?;
    let mut tag = [0u8; 8];
    for (i, byte) in tag.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((tag, u64::from_str_radix(offset, 16).ok()?))
}

/// The few BPF syscalls the poller needs (`BPF_PROG_GET_NEXT_ID`,
/// `BPF_PROG_GET_FD_BY_ID`, `BPF_OBJ_GET_INFO_BY_FD`,
/// `BPF_BTF_GET_FD_BY_ID`), with the layouts of linux/bpf.h and
/// linux/btf.h.
mod bpf {
    use super::*;

    const PROG_GET_NEXT_ID: libc::c_long = 11;
    const PROG_GET_FD_BY_ID: libc::c_long = 13;
    const OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BTF_GET_FD_BY_ID: libc::c_long = 19;

    // struct bpf_prog_info offsets.
    const INFO_LEN: usize = 256;
    const TAG: usize = 8;
    const NAME: usize = 64;
    const NR_JITED_KSYMS: usize = 104;
    const NR_JITED_FUNC_LENS: usize = 108;
    const JITED_KSYMS: usize = 112;
    const JITED_FUNC_LENS: usize = 120;
    const BTF_ID: usize = 128;
    const NR_LINE_INFO: usize = 148;
    const LINE_INFO: usize = 152;
    const JITED_LINE_INFO: usize = 160;
    const NR_JITED_LINE_INFO: usize = 168;
    const LINE_INFO_REC_SIZE: usize = 172;
    const JITED_LINE_INFO_REC_SIZE: usize = 176;
    const NR_PROG_TAGS: usize = 180;
    const PROG_TAGS: usize = 184;
    /// struct bpf_line_info: insn_off, file_name_off, line_off, line_col.
    const LINE_RECORD: usize = 16;

    pub struct Program {
        pub name: String,
        pub functions: Vec<JitFunction>,
        pub records: Vec<Record>,
    }

    pub struct JitFunction {
        pub tag: [u8; 8],
        pub start: u64,
        pub len: u32,
    }

    pub struct Record {
        pub address: u64,
        pub file: String,
        pub line: u32,
        pub text: String,
    }

    fn sys(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<libc::c_long> {
        // SAFETY: `attr` is a 128-byte union bpf_attr for `cmd`; every
        // pointer in it points into a live buffer of the length given.
        let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    fn u32_at(buf: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
    }

    fn u64_at(buf: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
    }

    fn put(buf: &mut [u8], at: usize, value: &[u8]) {
        buf[at..at + value.len()].copy_from_slice(value);
    }

    /// Asks `info` for an array: its count `nr` at `nr_at`, and the
    /// buffer the kernel fills at `ptr_at`.
    fn ask(info: &mut [u8], nr_at: usize, nr: usize, ptr_at: usize, buffer: &mut [u8]) {
        put(info, nr_at, &(nr as u32).to_ne_bytes());
        put(info, ptr_at, &(buffer.as_mut_ptr() as u64).to_ne_bytes());
    }

    pub fn next_program_id(after: u32) -> Option<u32> {
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &after.to_ne_bytes());
        sys(PROG_GET_NEXT_ID, &mut attr).ok()?;
        Some(u32_at(&attr, 4))
    }

    fn fd(cmd: libc::c_long, id: u32) -> Result<OwnedFd> {
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &id.to_ne_bytes());
        let fd = sys(cmd, &mut attr)?;
        // SAFETY: a file descriptor the kernel just opened for us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    fn info(fd: &OwnedFd, buf: &mut [u8]) -> Result<()> {
        use std::os::fd::AsRawFd as _;
        let mut attr = [0u8; 128];
        put(&mut attr, 0, &(fd.as_raw_fd() as u32).to_ne_bytes());
        put(&mut attr, 4, &(buf.len() as u32).to_ne_bytes());
        put(&mut attr, 8, &(buf.as_mut_ptr() as u64).to_ne_bytes());
        sys(OBJ_GET_INFO_BY_FD, &mut attr).context("BPF_OBJ_GET_INFO_BY_FD")?;
        Ok(())
    }

    /// The program's functions and line records; `None` for a program
    /// that is not lb's.
    pub fn program(id: u32) -> Result<Option<Program>> {
        let fd = fd(PROG_GET_FD_BY_ID, id).context("BPF_PROG_GET_FD_BY_ID")?;
        let mut first = [0u8; INFO_LEN];
        info(&fd, &mut first)?;
        let name_bytes = &first[NAME..NAME + 16];
        let name = String::from_utf8_lossy(
            &name_bytes[..name_bytes.iter().position(|&b| b == 0).unwrap_or(16)],
        )
        .into_owned();
        if !name.starts_with(PREFIX) {
            return Ok(None);
        }
        let nr_ksyms = u32_at(&first, NR_JITED_KSYMS) as usize;
        let nr_lens = u32_at(&first, NR_JITED_FUNC_LENS) as usize;
        let nr_lines = u32_at(&first, NR_LINE_INFO) as usize;
        let nr_jited_lines = u32_at(&first, NR_JITED_LINE_INFO) as usize;
        let nr_tags = u32_at(&first, NR_PROG_TAGS) as usize;
        let btf_id = u32_at(&first, BTF_ID);
        if nr_ksyms == 0 || nr_lines == 0 || nr_jited_lines != nr_lines || btf_id == 0 {
            bail!(
                "{name}: no JIT image with line info ({nr_ksyms} functions, {nr_lines} line records, {nr_jited_lines} JIT line records, BTF {btf_id}); is the JIT on (net.core.bpf_jit_enable)?"
            );
        }
        let mut ksyms = vec![0u8; nr_ksyms * 8];
        let mut lens = vec![0u8; nr_lens * 4];
        let mut lines = vec![0u8; nr_lines * LINE_RECORD];
        let mut jited_lines = vec![0u8; nr_jited_lines * 8];
        let mut tags = vec![0u8; nr_tags * 8];
        let mut second = [0u8; INFO_LEN];
        ask(
            &mut second,
            NR_JITED_KSYMS,
            nr_ksyms,
            JITED_KSYMS,
            &mut ksyms,
        );
        ask(
            &mut second,
            NR_JITED_FUNC_LENS,
            nr_lens,
            JITED_FUNC_LENS,
            &mut lens,
        );
        ask(&mut second, NR_LINE_INFO, nr_lines, LINE_INFO, &mut lines);
        put(
            &mut second,
            LINE_INFO_REC_SIZE,
            &(LINE_RECORD as u32).to_ne_bytes(),
        );
        ask(
            &mut second,
            NR_JITED_LINE_INFO,
            nr_jited_lines,
            JITED_LINE_INFO,
            &mut jited_lines,
        );
        put(&mut second, JITED_LINE_INFO_REC_SIZE, &8u32.to_ne_bytes());
        ask(&mut second, NR_PROG_TAGS, nr_tags, PROG_TAGS, &mut tags);
        info(&fd, &mut second)?;
        let strings = btf_strings(btf_id)?;
        let string = |off: u32| -> String {
            let rest = strings.get(off as usize..).unwrap_or_default();
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        };
        let functions = (0..nr_ksyms.min(nr_lens))
            .map(|i| JitFunction {
                // The first function's symbol carries the program's tag,
                // each other one its own.
                tag: if i > 0 && nr_tags == nr_ksyms {
                    tags[i * 8..i * 8 + 8].try_into().expect("8 bytes")
                } else {
                    first[TAG..TAG + 8].try_into().expect("8 bytes")
                },
                start: u64_at(&ksyms, i * 8),
                len: u32_at(&lens, i * 4),
            })
            .collect();
        let records = (0..nr_lines)
            .map(|i| {
                let at = i * LINE_RECORD;
                let file = string(u32_at(&lines, at + 4));
                Record {
                    address: u64_at(&jited_lines, i * 8),
                    file: file.rsplit('/').next().unwrap_or_default().to_owned(),
                    line: u32_at(&lines, at + 12) >> 10,
                    text: string(u32_at(&lines, at + 8)).trim().to_owned(),
                }
            })
            .collect();
        Ok(Some(Program {
            name,
            functions,
            records,
        }))
    }

    /// The string section of BTF object `id` (struct btf_header: magic,
    /// version, flags, hdr_len, type_off, type_len, str_off, str_len).
    fn btf_strings(id: u32) -> Result<Vec<u8>> {
        let fd = fd(BTF_GET_FD_BY_ID, id).context("BPF_BTF_GET_FD_BY_ID")?;
        // struct bpf_btf_info: btf (pointer), btf_size, id, name, ...
        let mut first = [0u8; 64];
        info(&fd, &mut first)?;
        let size = u32_at(&first, 8) as usize;
        let mut btf = vec![0u8; size];
        let mut second = [0u8; 64];
        put(&mut second, 0, &(btf.as_mut_ptr() as u64).to_ne_bytes());
        put(&mut second, 8, &(size as u32).to_ne_bytes());
        info(&fd, &mut second)?;
        if btf.len() < 24 || u16::from_ne_bytes([btf[0], btf[1]]) != 0xeb9f {
            bail!("BTF object {id}: not BTF ({size} bytes)");
        }
        let hdr_len = u32_at(&btf, 4) as usize;
        let str_off = u32_at(&btf, 16) as usize;
        let str_len = u32_at(&btf, 20) as usize;
        btf.get(hdr_len + str_off..hdr_len + str_off + str_len)
            .map(<[u8]>::to_vec)
            .with_context(|| format!("BTF object {id}: string section out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jit_sample_gives_its_function_tag_and_offset() {
        assert_eq!(
            jit_sample(" ffffffffc0a4b1a4 bpf_prog_d8a76b7941a27a3e_lb_unconfirmed+0x1a4"),
            Some(([0xd8, 0xa7, 0x6b, 0x79, 0x41, 0xa2, 0x7a, 0x3e], 0x1a4))
        );
        assert_eq!(jit_sample("bpf_prog_d8a76b79_x+0x10"), None);
        assert_eq!(jit_sample(" ffffffff8154568d do_syscall_64+0x4f"), None);
        assert_eq!(
            jit_sample(" ffffffff8154568d __bpf_prog_enter_recur+0x4d"),
            None
        );
        assert_eq!(jit_sample("bpf_prog_d8a76b7941a27a3e_lb_xdp"), None);
    }

    #[test]
    fn a_sample_counts_for_the_last_line_record_at_or_before_it() {
        let tag = [1, 2, 3, 4, 5, 6, 7, 8];
        let line = |n: u32| Line {
            file: "main.rs".into(),
            line: n,
            text: format!("line {n}"),
        };
        let functions = Functions {
            by_tag: HashMap::from([(
                tag,
                Function {
                    program: "lb_xdp".into(),
                    records: vec![(0x10, 0), (0x20, 1)],
                },
            )]),
            lines: vec![line(7), line(9)],
            ..Functions::default()
        };
        let script = " ffffffffc0000008 bpf_prog_0102030405060708_lb_xdp+0x8\n\
                      ffffffffc0000010 bpf_prog_0102030405060708_lb_xdp+0x10\n\
                      ffffffffc000001f bpf_prog_0102030405060708_lb_xdp+0x1f\n\
                      ffffffffc0000020 bpf_prog_0102030405060708_lb_xdp+0x20\n\
                      ffffffffc0001020 bpf_prog_ffffffffffffffff_other+0x20\n\
                      ffffffff8154568d do_syscall_64+0x4f\n";
        let mut tally = Tally::default();
        for line in script.lines() {
            tally.add(&functions, line);
        }
        let report = render(&functions, &tally);
        assert!(report.contains("6 cpu-clock samples"), "{report}");
        assert!(
            report.contains("4 66.67 %  bpf_prog_0102030405060708_lb_xdp"),
            "{report}"
        );
        assert!(report.contains("1 16.67 %  do_syscall_64"), "{report}");
        assert!(
            report.contains("1 samples in BPF functions not seen"),
            "{report}"
        );
        assert!(
            report.contains("lb_xdp: 4 samples, 66.67 % of all"),
            "{report}"
        );
        assert!(report.contains("2  50.0 %  main.rs:7  line 7"), "{report}");
        assert!(report.contains("1  25.0 %  main.rs:9  line 9"), "{report}");
        assert!(
            report.contains("1  25.0 %  (before the first line record)"),
            "{report}"
        );
    }
}
