//! The themes and the palette that go with a corpus: loaded beside it,
//! computed by the same engine, and written into the cache beside the
//! orderings. They have a fingerprint of their own, so that changing them
//! recomputes only them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;

use crate::cache::{self, Manifest};
use crate::corpus;
use crate::engine::Engine;
use crate::fs::FolderLock;
use crate::quantize::Quantized;
use crate::timings::Timings;
use crate::{palette, themes};

/// Where the themes and the palette come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Themes (a small corpus) and, when separate, their embeddings.
    pub themes: Option<PathBuf>,
    pub theme_embeddings: Option<PathBuf>,
    /// Palette file (else the default palette, where the model matches).
    pub palette: Option<PathBuf>,
    pub palette_embeddings: Option<PathBuf>,
    /// No semantic colours at all.
    pub no_palette: bool,
}

/// The themes and the palette, loaded, and each poem's colour.
pub struct Extras {
    pub themes: Option<themes::Labelled>,
    pub palette: Option<palette::Palette>,
    /// Each included poem's colour, an index into the palette.
    pub colors: Vec<u16>,
}

/// Loads the themes and the palette (the default one unless told otherwise)
/// and gives every poem its nearest colour.
pub fn load(opts: &Sources, corpus: &corpus::Corpus, q: &Quantized, center: bool) -> Result<Extras> {
    let themes = match &opts.themes {
        Some(p) => Some(themes::load_labelled(
            "themes",
            p,
            opts.theme_embeddings.as_deref(),
            corpus,
            center,
        )?),
        None => None,
    };
    let palette = match &opts.palette {
        _ if opts.no_palette => None,
        Some(p) => Some(palette::load(p, opts.palette_embeddings.as_deref(), corpus, center)?),
        None => palette::load_default(corpus, center)?,
    };
    let colors = palette
        .as_ref()
        .map(|p| palette::assign(q, &p.vectors))
        .unwrap_or_default();
    Ok(Extras {
        themes,
        palette,
        colors,
    })
}

/// Computes every theme's orderings and writes them, with the themes' and
/// palette's vectors, into the generation folder `data` of the cache `m`
/// describes (before its manifest).
pub fn write(engine: Option<&mut Engine>, q: &Quantized, extras: &Extras, m: &Manifest, data: &Path) -> Result<()> {
    let width = m.theme_width;
    let count = extras.themes.as_ref().map_or(0, |t| t.vectors.n);
    let mut similar = vec![0; count * width];
    let mut different = vec![0; count * width];
    if let (Some(themes), Some(engine)) = (&extras.themes, engine) {
        engine.themes(q, &themes.vectors, width, &mut similar, &mut different)?;
    }
    cache::write_extras(
        data,
        m,
        &similar,
        &different,
        extras.themes.as_ref().map(|t| &t.vectors),
        extras.palette.as_ref().map(|p| &p.vectors),
    )
}

/// A finished cache whose orderings are up to date but whose themes or
/// palette changed.
pub struct Stale<'a> {
    /// The cache folder.
    pub dir: &'a Path,
    /// The folder's lock, held since the cache was found current.
    pub lock: FolderLock,
    /// The finished cache's manifest.
    pub old: Manifest,
    /// The manifest with the new themes and palette.
    pub pending: &'a Manifest,
}

/// Recomputes only the themes and colours of a [`Stale`] cache, writes
/// them beside the old ones in its generation folder (new names), switches
/// the manifest to them, removes the old ones, and returns the new
/// manifest. `engine` builds the engine for the themes' vectors.
pub fn recompute(
    stale: Stale,
    engine: impl FnOnce(&Quantized) -> Result<Engine>,
    q: &Quantized,
    extras: &Extras,
    mut timings: Timings,
) -> Result<Manifest> {
    let Stale {
        dir,
        lock: _lock,
        old,
        pending,
    } = stale;
    log::warn!(
        "cache {} is stale ({}); recomputing the themes and colours only",
        dir.display(),
        old.extras_differences(pending).join("; ")
    );
    // Only themes need the engine (and its similarity matrix).
    let t = Instant::now();
    let mut engine = match &extras.themes {
        Some(t) => Some(engine(&t.vectors)?),
        None => None,
    };
    timings.phase_since("similarity", t);
    let t = Instant::now();
    write(engine.as_mut(), q, extras, pending, &old.data_dir(dir))?;
    timings.phase_since("themes", t);
    cache::update_extras(dir, old, pending, timings)
}
