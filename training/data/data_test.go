package data

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"image/color"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/training"
)

func TestLoadFolder_goodAndBad(t *testing.T) {
	const res = 64
	dir := t.TempDir()
	// Good: a wide PNG whose center square is green (left/right quarters
	// red and blue), a JPEG, a JPEG stored sideways with EXIF orientation 6,
	// a WebP, and an RGBA PNG with a transparent half.
	wide := image.NewRGBA(image.Rect(0, 0, 160, 80))
	for y := 0; y < 80; y++ {
		for x := 0; x < 160; x++ {
			c := green
			if x < 40 {
				c = red
			} else if x >= 120 {
				c = blue
			}
			wide.SetRGBA(x, y, c)
		}
	}
	pngBytes := encodePNG(t, wide)
	writeFile(t, dir, "a_wide.png", pngBytes)
	writeFile(t, dir, "b_photo.jpg", encodeJPEG(t, halves(96, 96, red, blue)))
	writeFile(t, dir, "c_rotated.jpg", withExif(encodeJPEG(t, halves(96, 64, red, blue)), 6, "MM"))
	writeFile(t, dir, "d_solid.webp", solidWebP(70, 64, green))
	writeFile(t, dir, "e_alpha.png", encodePNG(t, halves(64, 64, color.RGBA{}, red)))
	// Bad: text, truncated JPEG, empty PNG, too small, duplicate content.
	writeFile(t, dir, "notes.txt", []byte("these are my dog photos\n"))
	full := encodeJPEG(t, halves(80, 80, red, green))
	writeFile(t, dir, "trunc.jpg", full[:len(full)/2])
	noisy := image.NewRGBA(image.Rect(0, 0, 96, 96))
	rand.New(rand.NewSource(2)).Read(noisy.Pix)
	scan := encodeJPEG(t, noisy)
	writeFile(t, dir, "trunc_scan.jpg", scan[:len(scan)-len(scan)/4]) // cut inside the entropy-coded data
	writeFile(t, dir, "empty.png", nil)
	writeFile(t, dir, "small.png", encodePNG(t, halves(30, 40, red, blue)))
	writeFile(t, dir, "z_copy.png", pngBytes)
	// Ignored: hidden files and sub-folders.
	writeFile(t, dir, ".DS_Store", []byte{0, 1, 2})
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)

	set, skipped, err := LoadFolder(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, im := range set.Images {
		names = append(names, filepath.Base(im.Path))
		if b := im.Crop.Bounds(); b.Dx() != res || b.Dy() != res {
			t.Errorf("%s: crop %v, want %dx%d", im.Path, b, res, res)
		}
	}
	if got := strings.Join(names, " "); got != "a_wide.png b_photo.jpg c_rotated.jpg d_solid.webp e_alpha.png" {
		t.Fatalf("loaded %s", got)
	}
	want := map[string]string{
		"notes.txt":      "not an image",
		"trunc.jpg":      "truncated or damaged jpeg",
		"trunc_scan.jpg": "truncated or damaged jpeg: invalid JPEG format",
		"empty.png":      "empty file",
		"small.png":      "30x40 is smaller than half the training resolution (32 px",
		"z_copy.png":     "same content as " + filepath.Join(dir, "a_wide.png"),
	}
	if len(skipped) != len(want) {
		t.Errorf("skipped %v", skipped)
	}
	for _, s := range skipped {
		w, ok := want[filepath.Base(s.Path)]
		if !ok || !strings.Contains(s.Reason, w) {
			t.Errorf("skipped %s, want reason containing %q", s, w)
		}
		t.Logf("skipped %s", s)
	}

	// The hash is of the file's bytes.
	sum := sha256.Sum256(pngBytes)
	if set.Images[0].SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("hash %s", set.Images[0].SHA256)
	}
	// Center crop: the wide PNG keeps its green middle only.
	a := set.Images[0]
	if a.Width != 160 || a.Height != 80 || a.Format != "png" {
		t.Errorf("a_wide: %dx%d %s", a.Width, a.Height, a.Format)
	}
	for _, p := range [][2]int{{0, 0}, {63, 0}, {0, 63}, {63, 63}, {32, 32}} {
		if c := rgbaAt(a.Crop, p[0], p[1]); !near(c, green, 2) {
			t.Errorf("a_wide crop at %v = %v, want green", p, c)
		}
	}
	// EXIF orientation 6: stored 96x64 red|blue, shown 64x96 red over blue.
	c := set.Images[2]
	if c.Width != 64 || c.Height != 96 {
		t.Errorf("rotated JPEG shown as %dx%d, want 64x96", c.Width, c.Height)
	}
	if top, bot := rgbaAt(c.Crop, 32, 4), rgbaAt(c.Crop, 32, 60); !near(top, red, 24) || !near(bot, blue, 24) {
		t.Errorf("rotated JPEG: top %v bottom %v, want red over blue", top, bot)
	}
	if d := set.Images[3]; d.Format != "webp" || !near(rgbaAt(d.Crop, 10, 10), green, 1) {
		t.Errorf("webp: %s %v", d.Format, rgbaAt(d.Crop, 10, 10))
	}
	// Transparent pixels become white.
	if e := set.Images[4]; !near(rgbaAt(e.Crop, 2, 30), color.RGBA{255, 255, 255, 255}, 1) || !near(rgbaAt(e.Crop, 60, 30), red, 1) {
		t.Errorf("alpha PNG: %v %v", rgbaAt(e.Crop, 2, 30), rgbaAt(e.Crop, 60, 30))
	}
}

func TestLoadFiles_noneUsable(t *testing.T) {
	dir := t.TempDir()
	p1 := writeFile(t, dir, "x.txt", []byte("hello"))
	p2 := writeFile(t, dir, "y.png", nil)
	_, skipped, err := LoadFiles([]string{p1, p2, filepath.Join(dir, "missing.jpg")}, 64)
	if !errors.Is(err, ErrNoImages) || len(skipped) != 3 {
		t.Fatalf("err %v skipped %v", err, skipped)
	}
	for _, s := range []string{"x.txt: not an image", "y.png: empty file", "missing.jpg: cannot read"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if _, _, err := LoadFolder(filepath.Join(dir, "nope"), 64); err == nil {
		t.Error("missing folder gave no error")
	}
	empty := t.TempDir()
	if _, _, err := LoadFolder(empty, 64); !errors.Is(err, ErrNoImages) || !strings.Contains(err.Error(), "no files") {
		t.Errorf("empty folder: %v", err)
	}
}

func TestOrient_allEight(t *testing.T) {
	// Source 3x2 labelled a b c / d e f; expected rows as shown.
	lab := func(i int) color.NRGBA { return color.NRGBA{uint8(10 * (i + 1)), 0, 0, 255} }
	src := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for i := 0; i < 6; i++ {
		src.SetNRGBA(i%3, i/3, lab(i))
	}
	const a, b, c, d, e, f = 0, 1, 2, 3, 4, 5
	want := map[int][][]int{
		1: {{a, b, c}, {d, e, f}},
		2: {{c, b, a}, {f, e, d}},
		3: {{f, e, d}, {c, b, a}},
		4: {{d, e, f}, {a, b, c}},
		5: {{a, d}, {b, e}, {c, f}},
		6: {{d, a}, {e, b}, {f, c}},
		7: {{f, c}, {e, b}, {d, a}},
		8: {{c, f}, {b, e}, {a, d}},
	}
	for o, rows := range want {
		got := Orient(src, o)
		if got.Bounds().Dy() != len(rows) || got.Bounds().Dx() != len(rows[0]) {
			t.Fatalf("orientation %d: size %v", o, got.Bounds())
		}
		for y, row := range rows {
			for x, l := range row {
				if r, _, _, _ := got.At(x, y).RGBA(); uint8(r>>8) != lab(l).R {
					t.Errorf("orientation %d at (%d,%d): label %d, want %d", o, x, y, r>>8/10-1, l)
				}
			}
		}
	}
}

func TestJPEGOrientation(t *testing.T) {
	jpg := encodeJPEG(t, halves(16, 8, red, blue))
	if o := JPEGOrientation(jpg); o != 1 {
		t.Errorf("no Exif: %d", o)
	}
	for o := 1; o <= 8; o++ {
		for _, bo := range []string{"II", "MM"} {
			if got := JPEGOrientation(withExif(jpg, o, bo)); got != o {
				t.Errorf("%s orientation %d read as %d", bo, o, got)
			}
		}
	}
	// Garbage never panics and gives a valid orientation: random bytes,
	// every truncation of a real Exif JPEG, and random corruption of its
	// Exif segment.
	rng := rand.New(rand.NewSource(1))
	good := withExif(jpg, 6, "II")
	check := func(b []byte) {
		if o := JPEGOrientation(b); o < 1 || o > 8 {
			t.Fatalf("orientation %d", o)
		}
	}
	for n := 0; n < 80; n++ {
		check(good[:n])
	}
	for i := 0; i < 2000; i++ {
		b := append([]byte{}, good[:60]...)
		for k := 0; k < 1+rng.Intn(4); k++ {
			b[2+rng.Intn(58)] = byte(rng.Intn(256))
		}
		check(b)
		r := make([]byte, rng.Intn(64))
		rng.Read(r)
		check(append([]byte{0xFF, 0xD8}, r...))
	}
	// Orientation 9 and the LONG type: out of range is 1, LONG tolerated.
	if o := JPEGOrientation(withExif(jpg, 9, "II")); o != 1 {
		t.Errorf("orientation 9 read as %d", o)
	}
}

func TestDecodeFile_errors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]byte{
		"empty.jpg":   nil,
		"text.png":    []byte("not really a png"),
		"header.png":  encodePNG(t, halves(8, 8, red, blue))[:20],
		"garbage.jpg": append([]byte{0xFF, 0xD8, 0xFF, 0xC0, 0, 4}, make([]byte, 30)...),
	}
	for name, b := range cases {
		_, err := DecodeFile(writeFile(t, dir, name, b))
		var de *DecodeError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
		t.Logf("%v", err)
	}
	img, err := DecodeFile(writeFile(t, dir, "ok.jpg", withExif(encodeJPEG(t, halves(32, 16, red, blue)), 8, "II")))
	if err != nil || img.Bounds().Dx() != 16 || img.Bounds().Dy() != 32 {
		t.Fatalf("ok.jpg: %v %v", err, img)
	}
	// Orientation 8 (90 degrees counter-clockwise): the right half (blue)
	// ends on top.
	if top := rgbaAt(img, 8, 2); !near(top, blue, 24) {
		t.Errorf("orientation 8: top %v, want blue", top)
	}
}

func TestPrepare_downscaleAverages(t *testing.T) {
	// A 1-pixel black/white checkerboard shrunk 4x must become mid grey,
	// not an aliased pattern.
	img := image.NewGray(image.Rect(0, 0, 256, 256))
	for y := 0; y < 256; y++ {
		for x := 0; x < 256; x++ {
			if (x+y)%2 == 0 {
				img.Pix[y*256+x] = 255
			}
		}
	}
	out := Prepare(img, 64)
	lo, hi := 255, 0
	for i := 0; i < len(out.Pix); i += 4 {
		lo, hi = min(lo, int(out.Pix[i])), max(hi, int(out.Pix[i]))
	}
	if lo < 110 || hi > 145 {
		t.Errorf("downscaled checkerboard spans %d..%d, want about 127", lo, hi)
	}
}

func TestTensorFlipAndPick(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.png", encodePNG(t, halves(16, 16, red, blue)))
	writeFile(t, dir, "b.png", encodePNG(t, halves(16, 16, green, red)))
	set, _, err := LoadFolder(dir, 16)
	if err != nil {
		t.Fatal(err)
	}
	x, fx := set.Tensor(0, false), set.Tensor(0, true)
	if len(x) != 3*16*16 {
		t.Fatalf("len %d", len(x))
	}
	// Red at the left: channel 0 at (0, 0) is 220/127.5-1.
	if v := x[0]; v < 0.72 || v > 0.73 {
		t.Errorf("R(0,0) = %v", v)
	}
	for c := 0; c < 3; c++ {
		for y := 0; y < 16; y++ {
			for xx := 0; xx < 16; xx++ {
				if x[(c*16+y)*16+xx] != fx[(c*16+y)*16+15-xx] {
					t.Fatalf("flip differs at c%d y%d x%d", c, y, xx)
				}
			}
		}
	}
	counts := map[[2]int]int{}
	for step := 0; step < 400; step++ {
		i, f := set.Pick(training.NewStream(3, step, 1))
		j, g := set.Pick(training.NewStream(3, step, 1))
		if i != j || f != g {
			t.Fatal("Pick is not a function of the stream")
		}
		fi := 0
		if f {
			fi = 1
		}
		counts[[2]int{i, fi}]++
	}
	for k, n := range counts {
		if n < 60 {
			t.Errorf("pick %v drawn %d of 400", k, n)
		}
	}
	if len(counts) != 4 {
		t.Errorf("picks %v", counts)
	}
}
