//! One SQLite library per process.
//!
//! SQLite's unix locks are POSIX advisory locks, which belong to the process: two copies of
//! SQLite in one process cannot see each other's locks, and closing any descriptor drops
//! every lock the process holds on that file. A second copy then believes it is alone: it
//! resets the WAL index that the first has mapped (SIGBUS in the first), checkpoints under
//! its readers, or deletes a WAL it still needs. fastflow therefore links the system's
//! `libsqlite3.so.0`, the library Python's `sqlite3` module (and so MLflow) uses on most
//! Linux Pythons, and the dynamic loader maps one copy for both.
//!
//! Some Pythons (conda, python.org builds) carry SQLite inside `_sqlite3` instead. For
//! those, `choose` turns on a safe mode: fastflow's copy takes open-file-description locks
//! (`F_OFD_*`), which conflict with the other copy's POSIX locks even inside one process and
//! are not dropped when the other copy closes a descriptor. So the other copy's WAL-index
//! recovery and its last-close checkpoint see fastflow as a separate holder, as they would
//! see another process.
//!
//! What the safe mode requires: fastflow's copy keeps at most one connection per database
//! file in the process (each store has one writer thread owning one connection). With OFD
//! locks SQLite's per-inode lock sharing between connections of one copy no longer holds:
//! a lock one connection takes could be released through another's descriptor. It also
//! leaves the shared library alone: only a copy that is fastflow's own is changed. One
//! difference from POSIX locks remains: a child forked without exec shares its parent's
//! open file descriptions, so a lock the parent held when it died lasts until the child
//! exits too.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::OnceLock;

use rusqlite::ffi;

use crate::error::{Error, Result};

/// The variable that forces the safe mode on (`1`) or off (`0`); unset, `choose` decides.
/// Forced on while Python shares fastflow's library, Python's `sqlite3` must not open the
/// store in the same process: that is for tests that load a second copy of their own.
pub const SAFE_MODE_ENV: &str = "FASTFLOW_SQLITE_SAFE_MODE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Python's `sqlite3` calls the very library fastflow calls.
    Shared,
    /// Python's `sqlite3` runs a SQLite of its own.
    Separate,
    /// This Python has no `_sqlite3` extension: nothing else in it opens SQLite files.
    NoPythonSqlite,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Shared => "shared",
            Verdict::Separate => "separate",
            Verdict::NoPythonSqlite => "no-python-sqlite",
        }
    }
}

/// A SQLite library as the loader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// The file that holds the library's code.
    pub file: String,
    /// `sqlite3_libversion()`, or empty where the library's symbols cannot be reached.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Libraries {
    pub verdict: Verdict,
    pub ours: Library,
    pub python: Option<Library>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub libraries: Libraries,
    pub safe_mode: bool,
    /// Why the safe mode could not be turned on where it was wanted.
    pub safe_mode_error: Option<String>,
    /// Whether SQLite still counts every allocation: it does when something in the process
    /// started SQLite before fastflow was imported (see `skip_memory_statistics`).
    pub memory_statistics: bool,
}

impl Choice {
    /// The one-time warning for a process with two SQLite copies, if this is one.
    pub fn warning(&self) -> Option<String> {
        let python = self.libraries.python.as_ref()?;
        if self.libraries.verdict != Verdict::Separate {
            return None;
        }
        let ours = &self.libraries.ours;
        let consequence = match (&self.safe_mode_error, self.safe_mode) {
            (Some(error), _) => format!(
                "the safe mode could not be turned on ({error}); do not open this store with \
                 Python's sqlite3 (or MLflow) in this process while fastflow writes to it"
            ),
            (None, true) => format!(
                "fastflow's copy now takes open-file-description locks so the two copies see \
                 each other's locks ({SAFE_MODE_ENV}=0 turns this off)"
            ),
            (None, false) => format!(
                "{SAFE_MODE_ENV}=0 keeps the safe mode off: do not open this store with \
                 Python's sqlite3 (or MLflow) in this process while fastflow writes to it"
            ),
        };
        Some(format!(
            "two SQLite libraries in this process: fastflow uses SQLite {} from {}, Python's \
             sqlite3 uses SQLite {} from {}; {consequence}",
            shown(&ours.version),
            ours.file,
            shown(&python.version),
            python.file,
        ))
    }
}

fn shown(version: &str) -> &str {
    if version.is_empty() {
        "(version not exported)"
    } else {
        version
    }
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl call.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown loader error".to_string()
    } else {
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}

/// The file whose code holds `address`.
fn file_of(address: *const c_void) -> Option<String> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables; dli_fname outlives the object's mapping.
    if unsafe { libc::dladdr(address, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    Some(
        unsafe { CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned(),
    )
}

type LibVersion = unsafe extern "C" fn() -> *const c_char;

fn library_of(libversion: LibVersion, fallback_file: &str) -> Library {
    let file = file_of(libversion as *const c_void).unwrap_or_else(|| fallback_file.to_string());
    // SAFETY: sqlite3_libversion takes nothing and returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(libversion()) }
        .to_string_lossy()
        .into_owned();
    Library { file, version }
}

/// The SQLite fastflow's own calls reach.
pub fn ours() -> Library {
    library_of(ffi::sqlite3_libversion, "fastflow's extension")
}

/// Where Python's `_sqlite3` module lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonSqlite {
    /// A shared object, the usual case.
    Extension(std::path::PathBuf),
    /// Linked into the interpreter itself.
    BuiltIn,
    /// This Python has no `sqlite3`.
    Absent,
}

/// Compares fastflow's SQLite with the one the shared object `extension` (Python's
/// `_sqlite3`) resolves. A lookup through a handle on the object searches the object, then
/// its dependencies: it finds what the extension's own calls find.
pub fn compare(extension: &Path) -> Result<Libraries> {
    let name = CString::new(extension.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::invalid("a library path with a NUL byte"))?;
    compare_through(Some(&name), &extension.display().to_string())
}

/// The same comparison for a `_sqlite3` built into the interpreter: a handle on the program
/// searches the program, then the libraries loaded with it.
pub fn compare_program() -> Result<Libraries> {
    compare_through(None, "the Python interpreter")
}

fn compare_through(name: Option<&CStr>, shown_as: &str) -> Result<Libraries> {
    let ours = ours();
    // Loading without running the module's init is harmless, and where Python already
    // loaded it this only takes another reference.
    let handle = unsafe {
        libc::dlopen(
            name.map_or(std::ptr::null(), CStr::as_ptr),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        )
    };
    if handle.is_null() {
        return Err(Error::Database {
            message: format!("cannot inspect {shown_as}: {}", dl_error()),
            transient: false,
        });
    }
    let symbol = unsafe { libc::dlsym(handle, c"sqlite3_libversion".as_ptr()) };
    let python = if symbol.is_null() {
        // A static SQLite whose symbols are hidden: certainly not the one fastflow calls.
        Library {
            file: shown_as.to_string(),
            version: String::new(),
        }
    } else {
        // SAFETY: the symbol is SQLite's sqlite3_libversion, whose signature is fixed.
        let libversion: LibVersion = unsafe { std::mem::transmute(symbol) };
        library_of(libversion, shown_as)
    };
    let shared =
        !symbol.is_null() && symbol.cast_const() == ffi::sqlite3_libversion as *const c_void;
    unsafe { libc::dlclose(handle) };
    Ok(Libraries {
        verdict: if shared {
            Verdict::Shared
        } else {
            Verdict::Separate
        },
        ours,
        python: Some(python),
    })
}

fn forced_safe_mode() -> Option<bool> {
    match std::env::var(SAFE_MODE_ENV).ok()?.trim() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

/// The choice already made in this process, if any.
pub fn chosen() -> Option<&'static Choice> {
    CHOICE.get()
}

/// Checks the libraries once per process and turns on the safe mode where it is needed.
/// Must run before fastflow opens its first database file: SQLite's system-call table may
/// only change while no file is open through it.
pub fn choose(python: &PythonSqlite) -> &'static Choice {
    CHOICE.get_or_init(|| {
        let memory_statistics = skip_memory_statistics();
        let compared = match python {
            PythonSqlite::Extension(path) => compare(path),
            PythonSqlite::BuiltIn => compare_program(),
            PythonSqlite::Absent => Err(Error::not_found("no _sqlite3")),
        };
        let libraries = match compared {
            Ok(libraries) => libraries,
            // An extension we cannot load is one Python cannot load either.
            Err(_) => Libraries {
                verdict: Verdict::NoPythonSqlite,
                ours: ours(),
                python: None,
            },
        };
        // Left to itself, this never changes a library Python shares: that copy coordinates
        // its own connections. Forcing it there is for tests that bring a copy of their own.
        let wanted = forced_safe_mode().unwrap_or(libraries.verdict == Verdict::Separate);
        let (safe_mode, safe_mode_error) = if wanted {
            match use_ofd_locks() {
                Ok(()) => (true, None),
                Err(error) => (false, Some(error.to_string())),
            }
        } else {
            (false, None)
        };
        Choice {
            libraries,
            safe_mode,
            safe_mode_error,
            memory_statistics,
        }
    })
}

static MEMORY_STATISTICS: OnceLock<bool> = OnceLock::new();

/// Turns off SQLite's allocation statistics if the library has not started yet, and says
/// whether they stay on; the first call decides. With them on, every allocation and free
/// takes a global mutex, an atomic operation in a process with more than one thread (any
/// process fastflow writes from): 1M points reach the disk 4% later. Nothing in Python's
/// `sqlite3` or MLflow reads the statistics; what they serve (`sqlite3_memory_used`, the
/// heap limits) then reports 0 or goes unenforced. A library already started (`import
/// sqlite3` starts it) keeps them: SQLite refuses the change, which is harmless.
pub fn skip_memory_statistics() -> bool {
    *MEMORY_STATISTICS.get_or_init(|| {
        // SAFETY: sqlite3_config returns SQLITE_MISUSE without touching anything once the
        // library is started. Should another thread be starting it at this very moment
        // (Python's `sqlite3` with the GIL released), the flag is all that changes under
        // it: statistics that miss the allocations made before the change.
        let code = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
        code != ffi::SQLITE_OK
    })
}

/// SQLite's unix VFS calls `fcntl(fd, cmd, ...)` through a table it lets callers replace.
/// The entry is declared variadic; on the 64-bit Linux ABIs (x86-64, AArch64) an int and a
/// pointer passed as variadic arguments arrive exactly as fixed ones, so a fixed signature
/// receives them.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
unsafe extern "C" fn ofd_fcntl(fd: c_int, cmd: c_int, arg: *mut c_void) -> c_int {
    let ofd = match cmd {
        libc::F_SETLK => libc::F_OFD_SETLK,
        libc::F_SETLKW => libc::F_OFD_SETLKW,
        libc::F_GETLK => libc::F_OFD_GETLK,
        _ => return unsafe { libc::fcntl(fd, cmd, arg) },
    };
    let lock = arg as *mut libc::flock;
    // The kernel refuses OFD requests whose l_pid is not 0.
    unsafe { (*lock).l_pid = 0 };
    unsafe { libc::fcntl(fd, ofd, lock) }
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn use_ofd_locks() -> Result<()> {
    let failed = |message: &str| Error::Database {
        message: message.to_string(),
        transient: false,
    };
    // SAFETY: this runs once, before fastflow's copy has a file open; the unix VFSes share
    // one system-call table, so replacing the entry in the default VFS covers them all.
    unsafe {
        let vfs = ffi::sqlite3_vfs_find(std::ptr::null());
        if vfs.is_null() {
            return Err(failed("SQLite has no default VFS"));
        }
        let Some(set) = (*vfs).xSetSystemCall else {
            return Err(failed("SQLite's default VFS cannot replace system calls"));
        };
        let wrapper: unsafe extern "C" fn(c_int, c_int, *mut c_void) -> c_int = ofd_fcntl;
        let entry: ffi::sqlite3_syscall_ptr = Some(std::mem::transmute::<
            unsafe extern "C" fn(c_int, c_int, *mut c_void) -> c_int,
            unsafe extern "C" fn(),
        >(wrapper));
        if set(vfs, c"fcntl".as_ptr(), entry) != ffi::SQLITE_OK {
            return Err(failed("SQLite's VFS refused a replacement for fcntl"));
        }
    }
    Ok(())
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn use_ofd_locks() -> Result<()> {
    Err(Error::Database {
        message: "open-file-description locks are only used on 64-bit Linux".to_string(),
        transient: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loaded file that holds fastflow's SQLite.
    fn our_file() -> String {
        ours().file
    }

    #[test]
    fn fastflow_runs_the_system_library() {
        let ours = ours();
        assert!(ours.file.contains("libsqlite3.so"), "{ours:?}");
        assert!(!ours.version.is_empty());
    }

    #[test]
    fn the_library_itself_is_shared() {
        let libraries = compare(Path::new(&our_file())).unwrap();
        assert_eq!(libraries.verdict, Verdict::Shared);
        assert_eq!(libraries.python.unwrap(), libraries.ours);
    }

    #[test]
    fn a_second_copy_is_separate() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("libsqlite3-copy.so");
        std::fs::copy(our_file(), &copy).unwrap();
        let libraries = compare(&copy).unwrap();
        assert_eq!(libraries.verdict, Verdict::Separate);
        let python = libraries.python.unwrap();
        assert_eq!(python.version, libraries.ours.version);
        assert!(python.file.ends_with("libsqlite3-copy.so"), "{python:?}");
        let choice = Choice {
            libraries: Libraries {
                verdict: Verdict::Separate,
                ours: libraries.ours.clone(),
                python: Some(python),
            },
            safe_mode: true,
            safe_mode_error: None,
            memory_statistics: false,
        };
        let warning = choice.warning().unwrap();
        assert!(warning.contains(&libraries.ours.file), "{warning}");
        assert!(warning.contains("libsqlite3-copy.so"), "{warning}");
    }

    #[test]
    fn the_test_program_reaches_the_same_library() {
        assert_eq!(compare_program().unwrap().verdict, Verdict::Shared);
    }

    #[test]
    fn a_missing_extension_is_an_error() {
        assert!(compare(Path::new("/nonexistent/_sqlite3.so")).is_err());
    }
}
