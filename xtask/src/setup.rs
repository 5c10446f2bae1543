//! `cargo xtask setup`: installs what the project needs, step by step, and
//! only what is missing.
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::{
    exec, require_root,
    toolchain::{self, LLVM_MAJOR, Verdict},
};

/// Debian packages: the LLVM that bpf-linker links against (`llvm-N-dev`,
/// `libpolly-N-dev`, `clang-N` for `LLVM_MAJOR`, added by [`packages`]), and
/// the tools the rigs, fixtures and benchmarks run.
const PACKAGES: &[&str] = &[
    "libzstd-dev",
    "zlib1g-dev",
    "bpftool",
    "iproute2",
    "ethtool",
    "procps",
    "iputils-ping",
    "util-linux",
    "socat",
    "tcpdump",
    "nftables",
    "nginx-light",
    "curl",
    "wrk",
    "iperf3",
    "keepalived",
    // `cargo xtask bench ... --profile` (xtask/src/profile.rs).
    "linux-perf",
];
const BPF_LINKER_VERSION: &str = "0.13.0";

/// The browser of the console's browser tests (lb-console/tests/browser.rs):
/// Debian's chromium, run headless, and its WebDriver server.
const BROWSER_PACKAGES: &[&str] = &["chromium", "chromium-driver"];
/// What the browser tests start (lb-console/tests/support/browser.rs).
const CHROMIUM: &str = "/usr/lib/chromium/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn packages() -> Vec<String> {
    ["llvm-{}-dev", "libpolly-{}-dev", "clang-{}"]
        .iter()
        .map(|name| name.replace("{}", &LLVM_MAJOR.to_string()))
        .chain(PACKAGES.iter().map(|name| name.to_string()))
        .collect()
}

fn llvm_prefix() -> String {
    format!("/usr/lib/llvm-{LLVM_MAJOR}")
}

struct Step {
    name: &'static str,
    /// What is missing, or `None` when the step has nothing to do.
    missing: fn() -> Result<Option<String>>,
    install: fn() -> Result<()>,
    /// What to try when `install` fails.
    hint: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        name: "Debian packages",
        missing: missing_packages,
        install: install_packages,
        hint: "check that `apt-get update` works and that the package names exist (`apt-cache policy clang-22`)",
    },
    Step {
        name: "chromium and chromium-driver of one version (the console's browser tests)",
        missing: missing_browser,
        install: install_browser,
        hint: "check that `apt-cache policy chromium chromium-driver` shows one candidate version for both",
    },
    Step {
        name: "eBPF toolchain (lb-ebpf/rust-toolchain.toml) with rust-src and clippy",
        missing: missing_ebpf_toolchain,
        install: install_ebpf_toolchain,
        hint: "run the rustup command above by hand to see rustup's error",
    },
    Step {
        name: "bpf-linker (links the eBPF object, built against the project's LLVM)",
        missing: missing_bpf_linker,
        install: install_bpf_linker,
        hint: "the build needs llvm-N-dev and libpolly-N-dev (first step); rerun `cargo xtask setup` after fixing them",
    },
    Step {
        name: "the eBPF toolchain and bpf-linker on the same LLVM",
        missing: llvm_disagreement,
        install: nothing_to_install,
        hint: "see the message above",
    },
];

/// Runs every step; prints what each found and did.
pub fn run() -> Result<()> {
    let mut installed = 0;
    for (n, step) in STEPS.iter().enumerate() {
        let prefix = format!("[setup {}/{}] {}", n + 1, STEPS.len(), step.name);
        match (step.missing)().with_context(|| format!("{prefix}: checking"))? {
            None => println!("{prefix}: present"),
            Some(what) => {
                require_root("setup")?;
                println!("{prefix}: installing {what}");
                (step.install)()
                    .with_context(|| format!("{prefix}: failed; try: {}", step.hint))?;
                if let Some(still) = (step.missing)()? {
                    bail!(
                        "{prefix}: still missing after install: {still}; try: {}",
                        step.hint
                    );
                }
                println!("{prefix}: installed");
                installed += 1;
            }
        }
    }
    if installed == 0 {
        println!("[setup] nothing to install: everything is present");
    } else {
        println!("[setup] done: {installed} step(s) installed something");
    }
    Ok(())
}

/// True when every step has nothing to do (checked without installing).
pub fn complete() -> Result<bool> {
    for step in STEPS {
        if (step.missing)()?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn missing_packages() -> Result<Option<String>> {
    let missing = missing_package_names();
    Ok((!missing.is_empty()).then(|| missing.join(" ")))
}

fn package_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && o.stdout.ends_with(b"install ok installed"))
        .unwrap_or(false)
}

fn missing_package_names() -> Vec<String> {
    packages()
        .into_iter()
        .filter(|pkg| !package_installed(pkg))
        .collect()
}

fn install_packages() -> Result<()> {
    apt_install(&missing_package_names())
}

/// `apt-get update`, then `apt-get install` of `packages` (installs them,
/// or upgrades them to the candidate version).
fn apt_install(packages: &[String]) -> Result<()> {
    exec(
        Command::new("apt-get")
            .args(["-q", "update"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get update",
    )?;
    exec(
        Command::new("apt-get")
            .args(["-q", "install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "apt-get install",
    )
}

/// The browser packages, or chromium and chromedriver of different
/// versions (chromedriver refuses a browser of another major version).
fn missing_browser() -> Result<Option<String>> {
    let missing: Vec<&str> = BROWSER_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| !package_installed(pkg))
        .collect();
    if !missing.is_empty() {
        return Ok(Some(missing.join(" ")));
    }
    let version = |program: &str| {
        Command::new(program)
            .arg("--version")
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    Ok(browser_mismatch(&version(CHROMIUM), &version(CHROMEDRIVER)))
}

/// What is wrong with the browser, from `chromium --version` ("Chromium
/// 156.0.8078.108 ...") and `chromedriver --version` ("ChromeDriver
/// 156.0.8078.108 (...)"), or `None` when both name the same version.
fn browser_mismatch(chromium: &str, chromedriver: &str) -> Option<String> {
    let version = |text: &str, name: &str| {
        text.strip_prefix(name)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    match (
        version(chromium, "Chromium "),
        version(chromedriver, "ChromeDriver "),
    ) {
        (Some(browser), Some(driver)) if browser == driver => None,
        (Some(browser), Some(driver)) => Some(format!(
            "chromium and chromium-driver of one version (chromium {browser}, chromedriver {driver})"
        )),
        (None, _) => Some(format!(
            "a working chromium ({CHROMIUM} --version said {:?})",
            chromium.trim()
        )),
        (_, None) => Some(format!(
            "a working chromium-driver ({CHROMEDRIVER} --version said {:?})",
            chromedriver.trim()
        )),
    }
}

fn install_browser() -> Result<()> {
    let packages: Vec<String> = BROWSER_PACKAGES.iter().map(|p| p.to_string()).collect();
    apt_install(&packages)
}

/// The pinned toolchain, or what it lacks. Never touches the user's own
/// `nightly` or `stable`.
fn missing_ebpf_toolchain() -> Result<Option<String>> {
    let channel = toolchain::ebpf_channel()?;
    let out = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", &channel])
        .output()
        .context("running rustup (is rustup installed?)")?;
    if !out.status.success() {
        return Ok(Some(format!("the toolchain {channel}")));
    }
    let listed = String::from_utf8_lossy(&out.stdout);
    let lacking: Vec<&str> = ["rust-src", "clippy"]
        .into_iter()
        .filter(|component| !listed.lines().any(|l| l.starts_with(component)))
        .collect();
    Ok((!lacking.is_empty()).then(|| format!("{} for {channel}", lacking.join(" and "))))
}

fn install_ebpf_toolchain() -> Result<()> {
    let channel = toolchain::ebpf_channel()?;
    let args = [
        "toolchain",
        "install",
        &channel,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
        "--component",
        "clippy",
    ];
    println!("  rustup {}", args.join(" "));
    exec(
        Command::new("rustup").args(args),
        &format!("rustup toolchain install {channel}"),
    )
}

/// bpf-linker of the pinned version, built against `LLVM_MAJOR`.
fn missing_bpf_linker() -> Result<Option<String>> {
    let want = format!("bpf-linker {BPF_LINKER_VERSION}");
    let found = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if !found.starts_with(&want) {
        return Ok(Some(want));
    }
    Ok(match toolchain::linker_llvm_major() {
        Some(LLVM_MAJOR) => None,
        Some(other) => Some(format!(
            "{want} against LLVM {LLVM_MAJOR} (found one on LLVM {other})"
        )),
        None => Some(format!(
            "{want} against LLVM {LLVM_MAJOR} (the one found names no LLVM)"
        )),
    })
}

/// Not installable: a disagreement is a message with the fix.
fn llvm_disagreement() -> Result<Option<String>> {
    let channel = toolchain::ebpf_channel()?;
    let Some(toolchain_llvm) = toolchain::toolchain_llvm_major(&channel)? else {
        bail!("the eBPF toolchain {channel} is not installed (the step above installs it)");
    };
    let verdict = toolchain::verdict(toolchain_llvm, toolchain::linker_llvm_major());
    if let Some(message) = toolchain::explain(&verdict, &channel, BPF_LINKER_VERSION) {
        bail!("{message}");
    }
    debug_assert_eq!(verdict, Verdict::Agree);
    Ok(None)
}

fn nothing_to_install() -> Result<()> {
    Ok(())
}

fn install_bpf_linker() -> Result<()> {
    let path = format!(
        "{}/bin:{}",
        llvm_prefix(),
        std::env::var("PATH").unwrap_or_default()
    );
    let feature = format!("llvm-{LLVM_MAJOR}");
    exec(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "install",
                "--force",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                &feature,
            ])
            .env("LLVM_PREFIX", llvm_prefix())
            .env("PATH", path),
        "cargo install bpf-linker",
    )
}

#[cfg(test)]
mod tests {
    use super::browser_mismatch;

    #[test]
    fn chromium_and_its_driver_must_be_of_one_version() {
        let chromium = "Chromium 156.0.8078.108 \n";
        let driver = "ChromeDriver 156.0.8078.108 (730482a940ce25ae7cf051320d8340e793acf8b9-refs/branch-heads/8078@{#2244})\n";
        assert_eq!(browser_mismatch(chromium, driver), None);
        assert_eq!(
            browser_mismatch("Chromium 157.0.1.2 \n", driver).as_deref(),
            Some(
                "chromium and chromium-driver of one version (chromium 157.0.1.2, chromedriver 156.0.8078.108)"
            )
        );
        assert!(
            browser_mismatch("", driver)
                .unwrap()
                .starts_with("a working chromium (")
        );
        assert!(
            browser_mismatch(chromium, "bash: chromedriver: not found")
                .unwrap()
                .starts_with("a working chromium-driver (")
        );
    }
}
