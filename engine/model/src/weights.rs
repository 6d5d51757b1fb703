//! Loads converted safetensors checkpoints into a [`tch::nn::VarStore`] by parameter
//! name. The file is memory-mapped and each tensor is copied exactly once, straight
//! from the mapping into its variable (converting dtype and device in that one copy).
//!
//! Every variable is checked before anything is copied: a checkpoint that does not
//! fit the model fails with ONE [`WeightsError::Mismatch`] listing every missing,
//! unexpected, mis-shaped and unsupported-dtype tensor, so a wrong file is diagnosed
//! in one run instead of one name at a time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tch::{nn, Device, Kind, Tensor};

/// One tensor whose shape in the file differs from the model's variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub expected: Vec<i64>,
    pub found: Vec<i64>,
}

/// Why a checkpoint could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot open checkpoint {path}: {error}")]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("checkpoint {path} is not a valid safetensors file: {error}")]
    Format {
        path: PathBuf,
        error: safetensors::SafeTensorError,
    },
    #[error("tensor {name} appears in both {first} and {second}")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{0}")]
    Mismatch(Box<Mismatch>),
    #[error("copying tensor {name} from {path} failed: {error}")]
    Copy {
        name: String,
        path: PathBuf,
        error: tch::TchError,
    },
}

/// Everything wrong between a checkpoint and a model, found in one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// The checkpoint file(s) that were checked.
    pub files: Vec<PathBuf>,
    /// Model variables with no tensor in the checkpoint.
    pub missing: Vec<String>,
    /// Checkpoint tensors the model has no variable for.
    pub unexpected: Vec<String>,
    pub mis_shaped: Vec<ShapeMismatch>,
    /// Tensors stored in a dtype other than float32, bfloat16 or float16: `(name, dtype)`.
    pub bad_dtype: Vec<(String, String)>,
}

impl Mismatch {
    fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mis_shaped.is_empty()
            && self.bad_dtype.is_empty()
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        write!(
            f,
            "checkpoint {} does not fit the model: {} missing, {} unexpected, {} mis-shaped, \
             {} with unsupported dtype",
            files.join(", "),
            self.missing.len(),
            self.unexpected.len(),
            self.mis_shaped.len(),
            self.bad_dtype.len()
        )?;
        for name in &self.missing {
            write!(f, "\n  missing:    {name}")?;
        }
        for name in &self.unexpected {
            write!(f, "\n  unexpected: {name}")?;
        }
        for m in &self.mis_shaped {
            write!(
                f,
                "\n  mis-shaped: {} (model {:?}, checkpoint {:?})",
                m.name, m.expected, m.found
            )?;
        }
        for (name, dtype) in &self.bad_dtype {
            write!(
                f,
                "\n  bad dtype:  {name} ({dtype}; supported: F32, BF16, F16)"
            )?;
        }
        Ok(())
    }
}

/// What a successful load did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub tensors: usize,
    pub bytes_read: usize,
}

/// Loads every variable of `vs` from one safetensors file (see [`load_files`]).
pub fn load_into(vs: &mut nn::VarStore, path: &Path) -> Result<LoadReport, WeightsError> {
    load_files(vs, &[path])
}

/// Loads every variable of `vs` from the union of several safetensors files (e.g. a
/// converted LLM plus separately converted encoders). Names must be unique across files.
pub fn load_files(vs: &mut nn::VarStore, paths: &[&Path]) -> Result<LoadReport, WeightsError> {
    load_stores(std::slice::from_mut(vs), paths)
}

/// [`load_files`] into the union of several stores' variables (a model placed across
/// devices has one store per device; each tensor is copied straight to its variable's
/// device). Variable names must be unique across the stores.
pub fn load_stores(
    stores: &mut [nn::VarStore],
    paths: &[&Path],
) -> Result<LoadReport, WeightsError> {
    let maps = paths
        .iter()
        .map(|p| map_file(p).map(|m| (p.to_path_buf(), m)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut files = Vec::with_capacity(maps.len());
    for (path, map) in &maps {
        let st = SafeTensors::deserialize(map).map_err(|error| WeightsError::Format {
            path: path.clone(),
            error,
        })?;
        files.push((path.as_path(), st));
    }

    // name -> (file index, view)
    let mut index: BTreeMap<String, (usize, safetensors::tensor::TensorView<'_>)> = BTreeMap::new();
    for (fi, (path, st)) in files.iter().enumerate() {
        for (name, view) in st.tensors() {
            if let Some((other, _)) = index.get(&name) {
                return Err(WeightsError::Duplicate {
                    name,
                    first: files[*other].0.to_path_buf(),
                    second: path.to_path_buf(),
                });
            }
            index.insert(name, (fi, view));
        }
    }

    let vars: BTreeMap<String, Tensor> = stores.iter().flat_map(|vs| vs.variables()).collect();
    let mut problems = Mismatch {
        files: paths.iter().map(|p| p.to_path_buf()).collect(),
        ..Default::default()
    };
    for (name, var) in &vars {
        match index.get(name) {
            None => problems.missing.push(name.clone()),
            Some((_, view)) => {
                let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                if found != var.size() {
                    problems.mis_shaped.push(ShapeMismatch {
                        name: name.clone(),
                        expected: var.size(),
                        found,
                    });
                }
                if kind_of(view.dtype()).is_none() {
                    problems
                        .bad_dtype
                        .push((name.clone(), format!("{:?}", view.dtype())));
                }
            }
        }
    }
    problems.unexpected = index
        .keys()
        .filter(|n| !vars.contains_key(*n))
        .cloned()
        .collect();
    if !problems.is_empty() {
        return Err(WeightsError::Mismatch(Box::new(problems)));
    }

    let mut report = LoadReport::default();
    tch::no_grad(|| -> Result<(), WeightsError> {
        for (name, var) in &vars {
            let (fi, view) = &index[name];
            let copy_err = |error| WeightsError::Copy {
                name: name.clone(),
                path: files[*fi].0.to_path_buf(),
                error,
            };
            let kind = kind_of(view.dtype()).expect("dtypes were checked above");
            let src = borrow_tensor(view.data(), &var.size(), kind).map_err(copy_err)?;
            let mut dst = var.shallow_clone();
            dst.f_copy_(&src).map_err(copy_err)?;
            report.tensors += 1;
            report.bytes_read += view.data().len();
        }
        Ok(())
    })?;
    Ok(report)
}

/// Names and shapes of every tensor in a safetensors file (for tools and error reports).
pub fn list_tensors(path: &Path) -> Result<HashMap<String, Vec<i64>>, WeightsError> {
    let map = map_file(path)?;
    let st = SafeTensors::deserialize(&map).map_err(|error| WeightsError::Format {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().iter().map(|&d| d as i64).collect()))
        .collect())
}

fn map_file(path: &Path) -> Result<Mmap, WeightsError> {
    let open_err = |error| WeightsError::Open {
        path: path.to_path_buf(),
        error,
    };
    let file = File::open(path).map_err(open_err)?;
    // SAFETY: the mapping is read-only and lives only for this call; a checkpoint being
    // rewritten while it loads is outside what any loader can defend against.
    unsafe { Mmap::map(&file) }.map_err(open_err)
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F16 => Some(Kind::Half),
        _ => None,
    }
}

/// A CPU tensor viewing `data` without copying when it is aligned for `kind`; an
/// unaligned tensor (legal in old safetensors files) is copied into an aligned buffer.
fn borrow_tensor(data: &[u8], shape: &[i64], kind: Kind) -> Result<Tensor, tch::TchError> {
    let elt = kind.elt_size_in_bytes();
    if !(data.as_ptr() as usize).is_multiple_of(elt) || data.is_empty() {
        return Tensor::f_from_data_size(data, shape, kind);
    }
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    // SAFETY: `data` holds exactly prod(shape) elements of `kind` (safetensors checked
    // the byte length against shape and dtype) and outlives the returned tensor, which
    // is only read by the single `copy_` that follows.
    Ok(unsafe { Tensor::from_blob(data.as_ptr(), shape, &strides, kind, Device::Cpu) })
}
