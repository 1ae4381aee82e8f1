//! A text console drawn on a linear framebuffer: glyphs of the Noto Sans
//! Mono bitmap font (`noto-sans-mono-bitmap`, 7x16 pixels), scrolling,
//! colours (a few ANSI SGR sequences, so log levels and programs can use
//! them) and a cursor.
//!
//! Pure pixel arithmetic over a `&mut [u8]` the caller owns: the kernel
//! passes the mapped framebuffer, the tests and the host's screen check
//! pass memory. Any pitch, 24 or 32 bits per pixel, channels anywhere in
//! the pixel (as the boot loader describes them). Nothing here panics on
//! a bad geometry: [`TextConsole::new`] refuses one that does not fit the
//! buffer.

use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};

const WEIGHT: FontWeight = FontWeight::Regular;
const HEIGHT: RasterHeight = RasterHeight::Size16;
/// Pixel width of one character cell.
pub const CELL_WIDTH: usize = get_raster_width(WEIGHT, HEIGHT);
/// Pixel height of one character cell.
pub const CELL_HEIGHT: usize = HEIGHT.val();
/// Rows of the cursor bar at the bottom of its cell.
const CURSOR_ROWS: usize = 2;

/// A colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// The ANSI colours 0-7 (normal) and 8-15 (bright), VGA's palette.
pub const PALETTE: [Rgb; 16] = [
    Rgb(0, 0, 0),
    Rgb(170, 0, 0),
    Rgb(0, 170, 0),
    Rgb(170, 85, 0),
    Rgb(0, 0, 170),
    Rgb(170, 0, 170),
    Rgb(0, 170, 170),
    Rgb(170, 170, 170),
    Rgb(85, 85, 85),
    Rgb(255, 85, 85),
    Rgb(85, 255, 85),
    Rgb(255, 255, 85),
    Rgb(85, 85, 255),
    Rgb(255, 85, 255),
    Rgb(85, 255, 255),
    Rgb(255, 255, 255),
];
/// Text colour when none is set.
pub const DEFAULT_FG: Rgb = PALETTE[7];
/// Background colour.
pub const DEFAULT_BG: Rgb = PALETTE[0];

/// Where one colour channel sits in a pixel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Bit position of its lowest bit.
    pub shift: u8,
    /// Its width in bits (1..=8).
    pub bits: u8,
}

/// How a framebuffer is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub width: usize,
    pub height: usize,
    /// Bytes from one pixel row to the next (at least `width * bytes`).
    pub pitch: usize,
    /// 24 or 32.
    pub bits_per_pixel: u8,
    pub red: Channel,
    pub green: Channel,
    pub blue: Channel,
}

impl Geometry {
    /// The usual 32-bit layout, blue in the lowest byte (`0x00RRGGBB`).
    pub const fn bgrx(width: usize, height: usize, pitch: usize) -> Self {
        Self::packed(width, height, pitch, 32)
    }

    /// Blue, green, red from the lowest byte up, in 24 or 32 bits.
    pub const fn packed(width: usize, height: usize, pitch: usize, bits_per_pixel: u8) -> Self {
        Self {
            width,
            height,
            pitch,
            bits_per_pixel,
            red: Channel { shift: 16, bits: 8 },
            green: Channel { shift: 8, bits: 8 },
            blue: Channel { shift: 0, bits: 8 },
        }
    }

    fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// Why this geometry cannot be drawn on a buffer of `len` bytes, if it
    /// cannot.
    pub fn check(&self, len: usize) -> Result<(), &'static str> {
        if self.bits_per_pixel != 24 && self.bits_per_pixel != 32 {
            return Err("only 24 and 32 bits per pixel are drawn");
        }
        for c in [self.red, self.green, self.blue] {
            if c.bits == 0 || c.bits > 8 || u32::from(c.shift) + u32::from(c.bits) > 32 {
                return Err("a colour channel does not fit the pixel");
            }
        }
        let row = self
            .width
            .checked_mul(self.bytes_per_pixel())
            .ok_or("width overflows")?;
        if self.pitch < row {
            return Err("pitch is smaller than a row of pixels");
        }
        let size = self
            .pitch
            .checked_mul(self.height)
            .ok_or("size overflows")?;
        if size > len {
            return Err("the framebuffer is smaller than its geometry");
        }
        if self.width < CELL_WIDTH || self.height < CELL_HEIGHT {
            return Err("smaller than one character");
        }
        Ok(())
    }

    /// The pixel value of `colour`, in the pixel's little-endian bytes.
    pub fn encode(&self, colour: Rgb) -> u32 {
        let put = |c: Channel, v: u8| (u32::from(v) >> (8 - c.bits)) << c.shift;
        put(self.red, colour.0) | put(self.green, colour.1) | put(self.blue, colour.2)
    }

    /// The colour of an encoded pixel (channels narrower than 8 bits are
    /// scaled back without filling their low bits).
    pub fn decode(&self, pixel: u32) -> Rgb {
        let get = |c: Channel| {
            let mask = (1u32 << c.bits) - 1;
            (((pixel >> c.shift) & mask) << (8 - c.bits)) as u8
        };
        Rgb(get(self.red), get(self.green), get(self.blue))
    }

    /// Byte offset of pixel (`x`, `y`).
    pub fn offset(&self, x: usize, y: usize) -> usize {
        y * self.pitch + x * self.bytes_per_pixel()
    }

    /// Reads pixel (`x`, `y`) of `fb` (`None` outside the buffer).
    pub fn pixel(&self, fb: &[u8], x: usize, y: usize) -> Option<Rgb> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let at = self.offset(x, y);
        let bytes = fb.get(at..at + self.bytes_per_pixel())?;
        let mut value = 0u32;
        for (i, b) in bytes.iter().enumerate() {
            value |= u32::from(*b) << (8 * i);
        }
        Some(self.decode(value))
    }

    fn put(&self, fb: &mut [u8], x: usize, y: usize, value: u32) {
        let at = self.offset(x, y);
        let n = self.bytes_per_pixel();
        if let Some(bytes) = fb.get_mut(at..at + n) {
            bytes.copy_from_slice(&value.to_le_bytes()[..n]);
        }
    }
}

/// Parser state for escape sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// In `ESC [`, with the parameters so far.
    Csi {
        params: [u16; 4],
        count: usize,
    },
}

/// A text console on a framebuffer of a given [`Geometry`].
pub struct TextConsole {
    geometry: Geometry,
    cols: usize,
    rows: usize,
    col: usize,
    row: usize,
    fg: Rgb,
    bg: Rgb,
    escape: Escape,
    cursor_shown: bool,
}

impl TextConsole {
    /// A console covering the whole framebuffer, or why not.
    pub fn new(geometry: Geometry, fb_len: usize) -> Result<Self, &'static str> {
        geometry.check(fb_len)?;
        Ok(Self {
            geometry,
            cols: geometry.width / CELL_WIDTH,
            rows: geometry.height / CELL_HEIGHT,
            col: 0,
            row: 0,
            fg: DEFAULT_FG,
            bg: DEFAULT_BG,
            escape: Escape::None,
            cursor_shown: false,
        })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Columns and rows of text.
    pub fn size(&self) -> (usize, usize) {
        (self.cols, self.rows)
    }

    /// The cursor's column and row.
    pub fn cursor(&self) -> (usize, usize) {
        (self.col, self.row)
    }

    /// Sets the text colour (`None`: the default).
    pub fn set_fg(&mut self, fg: Option<Rgb>) {
        self.fg = fg.unwrap_or(DEFAULT_FG);
    }

    /// Fills the screen with the background and puts the cursor top left.
    pub fn clear(&mut self, fb: &mut [u8]) {
        let bg = self.geometry.encode(self.bg);
        for y in 0..self.geometry.height {
            for x in 0..self.geometry.width {
                self.geometry.put(fb, x, y, bg);
            }
        }
        self.col = 0;
        self.row = 0;
        self.cursor_shown = false;
        self.toggle_cursor(fb);
    }

    /// Draws `bytes` (ASCII; other bytes show as `?`) at the cursor.
    pub fn write(&mut self, fb: &mut [u8], bytes: &[u8]) {
        if self.cursor_shown {
            self.toggle_cursor(fb);
        }
        for &b in bytes {
            self.byte(fb, b);
        }
        self.toggle_cursor(fb);
    }

    fn byte(&mut self, fb: &mut [u8], b: u8) {
        match self.escape {
            Escape::None => {}
            Escape::Start => {
                self.escape = if b == b'[' {
                    Escape::Csi {
                        params: [0; 4],
                        count: 0,
                    }
                } else {
                    Escape::None
                };
                return;
            }
            Escape::Csi {
                mut params,
                mut count,
            } => {
                match b {
                    b'0'..=b'9' => {
                        count = count.max(1);
                        let p = &mut params[count - 1];
                        *p = p.saturating_mul(10).saturating_add(u16::from(b - b'0'));
                        self.escape = Escape::Csi { params, count };
                    }
                    b';' => {
                        count = (count.max(1) + 1).min(params.len());
                        self.escape = Escape::Csi { params, count };
                    }
                    0x40..=0x7e => {
                        if b == b'm' {
                            self.sgr(&params[..count.max(1)]);
                        }
                        self.escape = Escape::None;
                    }
                    _ => self.escape = Escape::None,
                }
                return;
            }
        }
        match b {
            0x1b => self.escape = Escape::Start,
            b'\n' => self.newline(fb),
            b'\r' => self.col = 0,
            0x08 => self.col = self.col.saturating_sub(1),
            b'\t' => {
                let next = (self.col / 8 + 1) * 8;
                while self.col < next.min(self.cols) {
                    self.glyph(fb, b' ');
                }
            }
            0x20..=0x7e => self.glyph(fb, b),
            0x00..=0x1f | 0x7f => {}
            _ => self.glyph(fb, b'?'),
        }
    }

    /// `ESC [ ... m`: 0 resets, 30-37 and 90-97 set the text colour, 39
    /// the default; the rest is ignored.
    fn sgr(&mut self, params: &[u16]) {
        for &p in params {
            match p {
                0 | 39 => self.fg = DEFAULT_FG,
                30..=37 => self.fg = PALETTE[usize::from(p - 30)],
                90..=97 => self.fg = PALETTE[usize::from(p - 90) + 8],
                _ => {}
            }
        }
    }

    fn glyph(&mut self, fb: &mut [u8], b: u8) {
        if self.col >= self.cols {
            self.newline(fb);
        }
        draw_glyph(
            &self.geometry,
            fb,
            self.col * CELL_WIDTH,
            self.row * CELL_HEIGHT,
            char::from(b),
            self.fg,
            self.bg,
        );
        self.col += 1;
    }

    fn newline(&mut self, fb: &mut [u8]) {
        self.col = 0;
        if self.row + 1 < self.rows {
            self.row += 1;
            return;
        }
        // Scroll: every text row moves up one, the last is cleared.
        let g = self.geometry;
        let row_bytes = g.pitch * CELL_HEIGHT;
        let used = row_bytes * self.rows;
        fb.copy_within(row_bytes..used, 0);
        let bg = g.encode(self.bg);
        for y in (self.rows - 1) * CELL_HEIGHT..self.rows * CELL_HEIGHT {
            for x in 0..g.width {
                g.put(fb, x, y, bg);
            }
        }
    }

    /// Inverts the cursor bar at the cursor's cell (showing or hiding it).
    fn toggle_cursor(&mut self, fb: &mut [u8]) {
        let g = self.geometry;
        let col = self.col.min(self.cols - 1);
        let n = g.bytes_per_pixel();
        let top = self.row * CELL_HEIGHT + CELL_HEIGHT - CURSOR_ROWS;
        for y in top..top + CURSOR_ROWS {
            for x in col * CELL_WIDTH..(col + 1) * CELL_WIDTH {
                let at = g.offset(x, y);
                if let Some(bytes) = fb.get_mut(at..at + n) {
                    for byte in bytes {
                        *byte = !*byte;
                    }
                }
            }
        }
        self.cursor_shown = !self.cursor_shown;
    }
}

/// Draws character `c` with its cell's top left at (`x`, `y`), blending
/// the font's coverage between `bg` and `fg`. Characters the font lacks
/// show as `?`.
pub fn draw_glyph(g: &Geometry, fb: &mut [u8], x: usize, y: usize, c: char, fg: Rgb, bg: Rgb) {
    let Some(raster) = get_raster(c, WEIGHT, HEIGHT).or_else(|| get_raster('?', WEIGHT, HEIGHT))
    else {
        return;
    };
    for (dy, row) in raster.rows().enumerate() {
        for (dx, &coverage) in row.iter().enumerate() {
            if x + dx < g.width && y + dy < g.height {
                g.put(fb, x + dx, y + dy, g.encode(blend(fg, bg, coverage)));
            }
        }
    }
}

/// `bg` + (`fg` - `bg`) * `coverage` / 255, per channel.
pub fn blend(fg: Rgb, bg: Rgb, coverage: u8) -> Rgb {
    let mix = |f: u8, b: u8| {
        let (f, b, a) = (i32::from(f), i32::from(b), i32::from(coverage));
        (b + (f - b) * a / 255) as u8
    };
    Rgb(mix(fg.0, bg.0), mix(fg.1, bg.1), mix(fg.2, bg.2))
}

/// The pixels (`CELL_HEIGHT` rows of `text.len() * CELL_WIDTH`, row-major)
/// that the console draws for `text` in `fg` on the background: what a
/// screen check looks for.
pub fn render_line(text: &str, fg: Rgb) -> alloc::vec::Vec<Rgb> {
    let width = text.chars().count() * CELL_WIDTH;
    let mut out = alloc::vec![DEFAULT_BG; width * CELL_HEIGHT];
    for (i, c) in text.chars().enumerate() {
        let Some(raster) =
            get_raster(c, WEIGHT, HEIGHT).or_else(|| get_raster('?', WEIGHT, HEIGHT))
        else {
            continue;
        };
        for (dy, row) in raster.rows().enumerate() {
            for (dx, &coverage) in row.iter().enumerate() {
                out[dy * width + i * CELL_WIDTH + dx] = blend(fg, DEFAULT_BG, coverage);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(bpp: u8, width: usize, height: usize, pad: usize) -> (TextConsole, Vec<u8>) {
        let pitch = width * usize::from(bpp / 8) + pad;
        let g = Geometry::packed(width, height, pitch, bpp);
        let fb = vec![0x55u8; pitch * height];
        let mut c = TextConsole::new(g, fb.len()).unwrap();
        let mut fb = fb;
        c.clear(&mut fb);
        (c, fb)
    }

    /// The text in cell (`col`, `row`), matched against the font (the
    /// cursor's rows left out).
    fn cell_text(c: &TextConsole, fb: &[u8], row: usize, cols: usize) -> String {
        let g = c.geometry();
        (0..cols)
            .map(|col| {
                (0x20u8..0x7f)
                    .map(char::from)
                    .find(|&ch| {
                        let expected = render_line(&ch.to_string(), DEFAULT_FG);
                        (0..CELL_HEIGHT - CURSOR_ROWS).all(|dy| {
                            (0..CELL_WIDTH).all(|dx| {
                                g.pixel(fb, col * CELL_WIDTH + dx, row * CELL_HEIGHT + dy)
                                    == Some(expected[dy * CELL_WIDTH + dx])
                            })
                        })
                    })
                    .unwrap_or('#')
            })
            .collect()
    }

    #[test]
    fn geometry_is_checked() {
        assert!(Geometry::bgrx(640, 480, 2560).check(2560 * 480).is_ok());
        assert!(Geometry::bgrx(640, 480, 2000).check(usize::MAX).is_err());
        assert!(Geometry::bgrx(640, 480, 2560).check(2560 * 479).is_err());
        assert!(Geometry::packed(640, 480, 1920, 16)
            .check(usize::MAX)
            .is_err());
        assert!(Geometry::bgrx(usize::MAX, 2, usize::MAX)
            .check(usize::MAX)
            .is_err());
        assert!(Geometry::bgrx(4, 4, 16).check(64).is_err());
        let mut g = Geometry::bgrx(640, 480, 2560);
        g.red = Channel { shift: 30, bits: 8 };
        assert!(g.check(usize::MAX).is_err());
    }

    #[test]
    fn pixels_are_encoded_for_24_and_32_bits_and_any_channel_order() {
        let g = Geometry::bgrx(2, 1, 8);
        assert_eq!(g.encode(Rgb(0x12, 0x34, 0x56)), 0x0012_3456);
        let mut rgb = Geometry::packed(2, 1, 6, 24);
        rgb.red.shift = 0;
        rgb.blue.shift = 16;
        let mut fb = vec![0u8; 6];
        rgb.put(&mut fb, 1, 0, rgb.encode(Rgb(1, 2, 3)));
        assert_eq!(fb, [0, 0, 0, 1, 2, 3]);
        assert_eq!(rgb.pixel(&fb, 1, 0), Some(Rgb(1, 2, 3)));
        assert_eq!(rgb.pixel(&fb, 2, 0), None);
        // 5-6-5-style narrow channels keep their high bits.
        let mut narrow = Geometry::bgrx(1, 1, 4);
        narrow.red = Channel { shift: 11, bits: 5 };
        narrow.green = Channel { shift: 5, bits: 6 };
        narrow.blue = Channel { shift: 0, bits: 5 };
        assert_eq!(narrow.encode(Rgb(0xff, 0xff, 0xff)), 0xffff);
        assert_eq!(narrow.decode(0xffff), Rgb(0xf8, 0xfc, 0xf8));
    }

    #[test]
    fn text_lands_in_cells_with_any_pitch() {
        for (bpp, pad) in [(32, 0), (32, 12), (24, 0), (24, 7)] {
            let (mut c, mut fb) = console(bpp, 10 * CELL_WIDTH + 3, 3 * CELL_HEIGHT, pad);
            c.write(&mut fb, b"hi there");
            assert_eq!(cell_text(&c, &fb, 0, 8), "hi there", "{bpp} bpp pad {pad}");
            // Padding bytes past the row are never written.
            if pad > 0 {
                let g = c.geometry();
                let row_end = g.width * usize::from(bpp / 8);
                assert!(fb[row_end..g.pitch].iter().all(|&b| b == 0x55));
            }
        }
    }

    #[test]
    fn lines_wrap_and_the_screen_scrolls() {
        let (mut c, mut fb) = console(32, 5 * CELL_WIDTH, 3 * CELL_HEIGHT, 0);
        c.write(&mut fb, b"one\ntwo\nthree\nfour");
        // "three" filled row 1 exactly; "four" went to row 2 after one scroll.
        assert_eq!(cell_text(&c, &fb, 0, 5), "two  ");
        assert_eq!(cell_text(&c, &fb, 1, 5), "three");
        assert_eq!(cell_text(&c, &fb, 2, 4), "four");
        assert_eq!(c.cursor(), (4, 2));
        c.write(&mut fb, b"!wrap");
        assert_eq!(cell_text(&c, &fb, 1, 5), "four!");
        assert_eq!(cell_text(&c, &fb, 2, 4), "wrap");
    }

    #[test]
    fn backspace_and_carriage_return_move_the_cursor() {
        let (mut c, mut fb) = console(32, 10 * CELL_WIDTH, 2 * CELL_HEIGHT, 0);
        c.write(&mut fb, b"cat\x08 \x08r\rb");
        assert_eq!(cell_text(&c, &fb, 0, 3), "bar");
        assert_eq!(c.cursor(), (1, 0));
    }

    #[test]
    fn the_cursor_is_drawn_and_moves() {
        let (mut c, mut fb) = console(32, 4 * CELL_WIDTH, CELL_HEIGHT, 0);
        let g = c.geometry();
        let bar = CELL_HEIGHT - 1;
        assert_eq!(g.pixel(&fb, 0, bar), Some(Rgb(255, 255, 255)));
        c.write(&mut fb, b"x");
        assert_eq!(g.pixel(&fb, 0, bar), Some(DEFAULT_BG));
        assert_eq!(g.pixel(&fb, CELL_WIDTH, bar), Some(Rgb(255, 255, 255)));
    }

    #[test]
    fn sgr_sets_colours_and_other_escapes_are_ignored() {
        let (mut c, mut fb) = console(32, 10 * CELL_WIDTH, CELL_HEIGHT, 0);
        c.write(&mut fb, b"\x1b[91mE\x1b[0m\x1b[2Jx\x1b[1;32mg");
        let g = c.geometry();
        let colours = |col: usize| -> Vec<Rgb> {
            (0..CELL_HEIGHT - CURSOR_ROWS)
                .flat_map(|y| (0..CELL_WIDTH).map(move |x| (x, y)))
                .filter_map(|(x, y)| g.pixel(&fb, col * CELL_WIDTH + x, y))
                .collect()
        };
        assert!(colours(0).contains(&PALETTE[9]));
        assert!(colours(1).contains(&DEFAULT_FG));
        assert!(colours(2).contains(&PALETTE[2]));
        assert_eq!(c.cursor(), (3, 0));
    }

    #[test]
    fn render_line_matches_what_the_console_draws() {
        let (mut c, mut fb) = console(24, 12 * CELL_WIDTH, CELL_HEIGHT, 5);
        c.write(&mut fb, b"\x1b[33mecho: hi");
        let expected = render_line("echo: hi", PALETTE[3]);
        let g = c.geometry();
        let width = 8 * CELL_WIDTH;
        for y in 0..CELL_HEIGHT {
            for x in 0..width {
                assert_eq!(
                    g.pixel(&fb, x, y),
                    Some(expected[y * width + x]),
                    "({x}, {y})"
                );
            }
        }
    }
}
