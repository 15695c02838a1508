//! Deterministic thumbnail images for the demo site.
//!
//! Every image is drawn from its index alone (a seeded PRNG, integer
//! arithmetic only), so the same index and size always give the same bytes.
//! Each one gets a pattern (gradient, stripes, rings, checkerboard, plasma or
//! diamonds), a few inverted discs and its number in a small label box, so
//! the images on the test page are easy to tell apart.

use std::borrow::Cow;

/// A tiny SplitMix64 generator: deterministic, fast and good enough for
/// picking colours and sizes.
#[derive(Debug, Clone)]
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    pub(super) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `lo..=hi` (requires `lo <= hi`).
    pub(super) fn range(&mut self, lo: u32, hi: u32) -> u32 {
        let span = u64::from(hi - lo) + 1;
        lo + (self.next_u64() % span) as u32
    }
}

type Rgb = [u8; 3];

/// Everything that makes one image look the way it does.
struct Pattern {
    style: u32,
    period: i32,
    kx: i32,
    ky: i32,
    cx: i32,
    cy: i32,
    discs: Vec<(i32, i32, i32)>,
    colors: [Rgb; 3],
    noise: u32,
}

impl Pattern {
    fn new(rng: &mut SplitMix64, w: i32, h: i32) -> Self {
        let style = rng.range(0, 5);
        let period = rng.range(6, 24) as i32;
        let kx = rng.range(1, 4) as i32;
        let ky = rng.range(1, 4) as i32;
        let cx = rng.range(0, w as u32) as i32;
        let cy = rng.range(0, h as u32) as i32;
        let discs = (0..rng.range(0, 3))
            .map(|_| {
                let r = rng.range(6, (w.min(h) / 4).max(7) as u32) as i32;
                let x = rng.range(0, w as u32) as i32;
                let y = rng.range(0, h as u32) as i32;
                (x, y, r)
            })
            .collect();
        let mut color = || [0; 3].map(|_: u8| rng.range(0, 255) as u8);
        let colors = [color(), color(), color()];
        let noise = rng.range(0, 3) * 8;
        Pattern { style, period, kx, ky, cx, cy, discs, colors, noise }
    }

    /// The pattern's value at one pixel, 0..=255.
    fn value(&self, x: i32, y: i32, w: i32, h: i32, phase: i32) -> u8 {
        let p = self.period;
        let (dx, dy) = (x - self.cx, y - self.cy);
        let v = match self.style {
            0 => (x * self.kx + y * self.ky + phase) * 255 / (w * self.kx + h * self.ky),
            1 => {
                let band = if ((x * self.kx + y * self.ky + phase) / p) % 2 == 0 { 40 } else { 215 };
                (band * 3 + y * 255 / h) / 4
            }
            2 => {
                let d = dist2(dx, dy).isqrt() as i32;
                tri(d - phase, p)
            }
            3 => {
                let cell = ((x + phase) / p + y / p) % 2;
                cell * 150 + x * 105 / w
            }
            4 => {
                let a = tri(x * self.kx + y + phase, p);
                let b = tri(y * self.ky - 2 * x, p + 7);
                let c = tri(x + 2 * y - phase, 2 * p);
                (a + b + c) / 3
            }
            _ => tri(dx.abs() + dy.abs() + phase, p),
        };
        let mut inside = false;
        for &(ox, oy, r) in &self.discs {
            if dist2(x - ox, y - oy) <= dist2(r, 0) {
                inside = !inside;
            }
        }
        let v = v.rem_euclid(256) as u8;
        if inside {
            255 - v
        } else {
            v
        }
    }

    /// The three-colour ramp that pattern values are mapped onto, as a
    /// lookup table indexed by value.
    fn ramp(&self) -> Vec<Rgb> {
        let [c0, c1, c2] = self.colors;
        (0..=255u32)
            .map(|v| if v < 128 { lerp(c0, c1, v * 2) } else { lerp(c1, c2, (v - 128) * 2) })
            .collect()
    }
}

/// Per-pixel noise: xorshift32 is cheaper than SplitMix64, which matters in
/// unoptimised builds.
struct XorShift32(u32);

impl XorShift32 {
    fn new(rng: &mut SplitMix64) -> Self {
        XorShift32((rng.next_u64() >> 32) as u32 | 1)
    }

    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

/// Moves `c` by up to ±`amount`, chosen by the low byte of `bits`.
fn jitter(c: u8, bits: u32, amount: u32) -> u8 {
    let delta = ((bits & 0xFF) * (2 * amount + 1)) >> 8;
    let v = i32::from(c) + delta as i32 - amount as i32;
    if v < 0 {
        0
    } else if v > 255 {
        255
    } else {
        v as u8
    }
}

/// Squared distance, wide enough for any `u16` image size.
fn dist2(dx: i32, dy: i32) -> u64 {
    let (dx, dy) = (u64::from(dx.unsigned_abs()), u64::from(dy.unsigned_abs()));
    dx * dx + dy * dy
}

/// A triangle wave of the given half-period, 0..=255.
fn tri(t: i32, period: i32) -> i32 {
    let period = period.max(1);
    let m = t.rem_euclid(2 * period);
    let m = if m < period { m } else { 2 * period - m };
    m * 255 / period
}

fn lerp(a: Rgb, b: Rgb, t: u32) -> Rgb {
    let t = t.min(255);
    let mix = |a: u8, b: u8| ((u32::from(a) * (255 - t) + u32::from(b) * t) / 255) as u8;
    [mix(a[0], b[0]), mix(a[1], b[1]), mix(a[2], b[2])]
}

/// 3×5 bitmap digits, one row per three bits, top row in the high bits.
const DIGITS: [u16; 10] = [
    0b111_101_101_101_111,
    0b010_110_010_010_111,
    0b111_001_111_100_111,
    0b111_001_111_001_111,
    0b101_101_111_001_001,
    0b111_100_111_001_111,
    0b111_100_111_101_111,
    0b111_001_001_001_001,
    0b111_101_111_101_111,
    0b111_101_111_001_111,
];

/// Draws `number` in a label box at the bottom-left corner by calling
/// `put(x, y, ink)` for every label pixel (`ink` = digit, else background).
fn draw_label(number: usize, w: usize, h: usize, mut put: impl FnMut(usize, usize, bool)) {
    let text = number.to_string();
    let scale = (w.min(h) / 32).clamp(1, 3);
    let glyphs = text.len();
    let box_w = (glyphs * 4 + 1) * scale;
    let box_h = 7 * scale;
    if box_w > w || box_h > h {
        return;
    }
    let (x0, y0) = (scale, h - box_h - scale);
    for by in 0..box_h {
        for bx in 0..box_w {
            let (cx, cy) = (bx / scale, by / scale);
            let ink = (1..=5).contains(&cy) && cx >= 1 && (cx - 1) % 4 < 3 && {
                let glyph = (cx - 1) / 4;
                let digit = usize::from(text.as_bytes()[glyph] - b'0');
                let bit = 14 - ((cy - 1) * 3 + (cx - 1) % 4);
                (DIGITS[digit] >> bit) & 1 == 1
            };
            put(x0 + bx, y0 + by, ink);
        }
    }
}

fn seed(index: usize, salt: u64) -> SplitMix64 {
    SplitMix64::new((index as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ salt)
}

/// A baseline RGB JPEG (quality 80) of `w`×`h` pixels for image `index`.
/// Zero dimensions are treated as 1.
pub fn jpeg(index: usize, w: u16, h: u16) -> Vec<u8> {
    let (w, h) = (w.max(1), h.max(1));
    let (wi, hi) = (i32::from(w), i32::from(h));
    let mut rng = seed(index, 0x4A50_4547);
    let pattern = Pattern::new(&mut rng, wi, hi);
    let ramp = pattern.ramp();
    let mut noise = XorShift32::new(&mut rng);
    let mut rgb = Vec::with_capacity(usize::from(w) * usize::from(h) * 3);
    for y in 0..hi {
        for x in 0..wi {
            let [r, g, b] = ramp[usize::from(pattern.value(x, y, wi, hi, 0))];
            if pattern.noise > 0 {
                let bits = noise.next();
                rgb.push(jitter(r, bits, pattern.noise));
                rgb.push(jitter(g, bits >> 8, pattern.noise));
                rgb.push(jitter(b, bits >> 16, pattern.noise));
            } else {
                rgb.extend_from_slice(&[r, g, b]);
            }
        }
    }
    let (uw, uh) = (usize::from(w), usize::from(h));
    draw_label(index, uw, uh, |x, y, ink| {
        let at = (y * uw + x) * 3;
        let color = if ink { [20, 20, 20] } else { [250, 250, 250] };
        rgb[at..at + 3].copy_from_slice(&color);
    });
    let mut out = Vec::with_capacity(uw * uh / 2);
    let encoder = jpeg_encoder::Encoder::new(&mut out, 80);
    encoder
        .encode(&rgb, w, h, jpeg_encoder::ColorType::Rgb)
        .expect("encoding an in-memory RGB buffer of the stated size cannot fail");
    out
}

/// Palette entries reserved for the label: dark ink and light background.
const INK: u8 = 0;
const PAPER: u8 = 1;
/// Palette entries 2.. hold the pattern's colour ramp.
const RAMP: u32 = 30;

/// A GIF89a of `w`×`h` pixels with a 32-colour palette for image `index`;
/// every other index gets a looping two-frame animation. Zero dimensions are
/// treated as 1.
pub fn gif(index: usize, w: u16, h: u16) -> Vec<u8> {
    let (w, h) = (w.max(1), h.max(1));
    let (wi, hi) = (i32::from(w), i32::from(h));
    let mut rng = seed(index, 0x4749_4638);
    let pattern = Pattern::new(&mut rng, wi, hi);
    let mut palette = Vec::with_capacity(32 * 3);
    palette.extend_from_slice(&[16, 16, 16, 250, 250, 250]);
    let ramp = pattern.ramp();
    for i in 0..RAMP {
        palette.extend_from_slice(&ramp[(i * 255 / (RAMP - 1)) as usize]);
    }
    // Less noise than the JPEGs: it costs a palette image far more bytes.
    let noise = pattern.noise / 2;
    let mut bits = XorShift32::new(&mut rng);
    // Pattern value -> palette index of the nearest-below ramp entry.
    let levels: Vec<u8> = (0..=255u32).map(|v| 2 + (v * (RAMP - 1) / 255) as u8).collect();
    let animated = index.is_multiple_of(2);
    let frames = if animated { 2 } else { 1 };
    let mut out = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut out, w, h, &palette).expect("a 32-colour palette is valid");
        if animated {
            encoder.set_repeat(gif::Repeat::Infinite).expect("writing to a Vec cannot fail");
        }
        for frame_no in 0..frames {
            let phase = frame_no * pattern.period;
            let mut pixels = Vec::with_capacity(usize::from(w) * usize::from(h));
            for y in 0..hi {
                for x in 0..wi {
                    let mut v = pattern.value(x, y, wi, hi, phase);
                    if noise > 0 {
                        v = jitter(v, bits.next(), noise);
                    }
                    pixels.push(levels[usize::from(v)]);
                }
            }
            let uw = usize::from(w);
            draw_label(index, uw, usize::from(h), |x, y, ink| {
                pixels[y * uw + x] = if ink { INK } else { PAPER };
            });
            let frame = gif::Frame {
                width: w,
                height: h,
                delay: if animated { 60 } else { 0 },
                buffer: Cow::Owned(pixels),
                ..gif::Frame::default()
            };
            encoder.write_frame(&frame).expect("writing a valid frame to a Vec cannot fail");
        }
        encoder.into_inner().expect("writing to a Vec cannot fail");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_has_markers_and_is_deterministic() {
        for i in 1..=12 {
            let a = jpeg(i, 120, 90);
            assert_eq!(&a[..2], &[0xFF, 0xD8]);
            assert_eq!(&a[a.len() - 2..], &[0xFF, 0xD9]);
            assert_eq!(a, jpeg(i, 120, 90));
        }
        assert_ne!(jpeg(1, 100, 100), jpeg(2, 100, 100));
    }

    #[test]
    fn gif_decodes_to_requested_size() {
        for i in 1..=8 {
            let bytes = gif(i, 97, 64);
            assert_eq!(&bytes[..6], b"GIF89a");
            let mut decoder = gif::DecodeOptions::new().read_info(bytes.as_slice()).expect("valid gif");
            assert_eq!((decoder.width(), decoder.height()), (97, 64));
            let mut frames = 0;
            while let Some(frame) = decoder.read_next_frame().expect("valid frame") {
                assert_eq!((frame.width, frame.height), (97, 64));
                frames += 1;
            }
            assert_eq!(frames, if i % 2 == 0 { 2 } else { 1 });
        }
    }

    #[test]
    fn tiny_and_zero_sizes_do_not_panic() {
        for (w, h) in [(0, 0), (1, 1), (3, 200), (8, 8), (2, 40_000)] {
            assert!(!jpeg(5, w, h).is_empty());
            assert!(!gif(6, w, h).is_empty());
        }
    }

    #[test]
    fn label_draws_digits() {
        let mut ink = 0;
        draw_label(8, 64, 64, |_, _, i| ink += usize::from(i));
        // "8" lights 13 of the 15 cells, each scale² = 4 pixels.
        assert_eq!(ink, 13 * 4);
    }
}
