//! Coloured geometric shapes: the grounding targets. Drawn without anti-aliasing (a
//! pixel is painted when its centre lies inside the shape), so a shape's box is exactly
//! the box of the pixels it painted.

use super::canvas::Canvas;
use super::rng::PageRng;
use super::PixelBox;

/// Named colours a shape may take; names appear in labels and captions.
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [210, 35, 35]),
    ("green", [30, 150, 60]),
    ("blue", [35, 70, 205]),
    ("orange", [240, 140, 20]),
    ("purple", [130, 50, 165]),
    ("black", [20, 20, 20]),
];

/// Shape kinds; names appear in labels and captions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeKind {
    Square,
    Rectangle,
    Circle,
    Triangle,
    Diamond,
}

impl ShapeKind {
    pub const ALL: [ShapeKind; 5] = [
        ShapeKind::Square,
        ShapeKind::Rectangle,
        ShapeKind::Circle,
        ShapeKind::Triangle,
        ShapeKind::Diamond,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ShapeKind::Square => "square",
            ShapeKind::Rectangle => "rectangle",
            ShapeKind::Circle => "circle",
            ShapeKind::Triangle => "triangle",
            ShapeKind::Diamond => "diamond",
        }
    }

    /// Width over height of the shape's frame; rectangles get a random one.
    pub fn aspect(self, rng: &mut PageRng) -> f64 {
        match self {
            ShapeKind::Rectangle => {
                if rng.chance(0.5) {
                    rng.uniform(1.5, 2.5)
                } else {
                    rng.uniform(0.4, 0.66)
                }
            }
            _ => 1.0,
        }
    }
}

/// How a shape is painted: filled, or only its outline of a given stroke width.
#[derive(Clone, Copy, Debug)]
pub enum Paint {
    Fill,
    Stroke(f64),
}

/// Paints `kind` inscribed in the frame `(x, y, w, h)` and returns the box of the pixels
/// it painted (`None` if the frame is too small to paint any).
pub fn draw(
    canvas: &mut Canvas,
    kind: ShapeKind,
    frame: (f64, f64, f64, f64),
    colour: [u8; 3],
    paint: Paint,
) -> Option<PixelBox> {
    let (fx, fy, fw, fh) = frame;
    let (cx, cy, rx, ry) = (fx + fw / 2.0, fy + fh / 2.0, fw / 2.0, fh / 2.0);
    // Signed "inside" measure: <= 1 inside the shape scaled to the frame, so a stroke of
    // width t is the band between the shape and the shape shrunk by t.
    let inside = |px: f64, py: f64, shrink: f64| -> bool {
        let (rx, ry) = (rx - shrink, ry - shrink);
        if rx <= 0.0 || ry <= 0.0 {
            return false;
        }
        let (dx, dy) = ((px - cx) / rx, (py - cy) / ry);
        match kind {
            ShapeKind::Square | ShapeKind::Rectangle => dx.abs() <= 1.0 && dy.abs() <= 1.0,
            ShapeKind::Circle => dx * dx + dy * dy <= 1.0,
            ShapeKind::Diamond => dx.abs() + dy.abs() <= 1.0,
            // Apex at the top centre, base along the bottom: |dx| <= (dy + 1) / 2.
            ShapeKind::Triangle => dy <= 1.0 && dx.abs() <= (dy + 1.0) / 2.0,
        }
    };
    let mut painted: Option<PixelBox> = None;
    let (x0, y0) = (fx.floor().max(0.0) as u32, fy.floor().max(0.0) as u32);
    let x1 = ((fx + fw).ceil() as u32).min(canvas.width());
    let y1 = ((fy + fh).ceil() as u32).min(canvas.height());
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
            let on = match paint {
                Paint::Fill => inside(px, py, 0.0),
                Paint::Stroke(t) => inside(px, py, 0.0) && !inside(px, py, t),
            };
            if on {
                canvas.set(i64::from(x), i64::from(y), colour);
                let p = PixelBox::new(x, y, x + 1, y + 1);
                painted = Some(painted.map_or(p, |b| b.union(p)));
            }
        }
    }
    painted
}
