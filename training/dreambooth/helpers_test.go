package dreambooth

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training/data"
)

// classCache is a class-image cache shared by the package's tests (all
// draw the same class images from the untouched tiny model).
var classCache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dreambooth-classes-")
	if err != nil {
		panic(err)
	}
	classCache = dir
	code := m.Run()
	os.RemoveAll(dir)
	testenv.Close()
	os.Exit(code)
}

func tinyDir(t testing.TB) string {
	return filepath.Join(testenv.Fixtures(t), "sd-tiny", "diffusers")
}

// loadTiny loads the sd-tiny fixture pipeline in f32.
func loadTiny(t testing.TB, e *gpu.Engine) *sd.Pipeline {
	t.Helper()
	p, err := sd.Load(e, tinyDir(t), sd.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Release)
	return p
}

// subjectImage is a 64x64 picture: a coloured disc of radius r on a
// contrasting background, off-centre so that flips differ.
func subjectImage(fg, bg color.RGBA, cx, cy, r float64) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for y := 0; y < 64; y++ {
		for x := 0; x < 64; x++ {
			c := bg
			if math.Hypot(float64(x)-cx, float64(y)-cy) < r {
				c = fg
			}
			img.SetRGBA(x, y, c)
		}
	}
	return img
}

// writeSubject writes three subject PNGs into dir.
func writeSubject(t testing.TB, dir string) {
	t.Helper()
	imgs := []*image.RGBA{
		subjectImage(color.RGBA{230, 40, 30, 255}, color.RGBA{20, 30, 200, 255}, 24, 30, 16),
		subjectImage(color.RGBA{240, 60, 40, 255}, color.RGBA{30, 50, 180, 255}, 36, 28, 14),
		subjectImage(color.RGBA{210, 30, 50, 255}, color.RGBA{10, 40, 220, 255}, 30, 40, 18),
	}
	for i, im := range imgs {
		var b bytes.Buffer
		png.Encode(&b, im)
		if err := os.WriteFile(filepath.Join(dir, string(rune('a'+i))+".png"), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func loadSubject(t testing.TB) *data.Set {
	t.Helper()
	dir := t.TempDir()
	writeSubject(t, dir)
	set, _, err := data.LoadFolder(dir, 64)
	if err != nil {
		t.Fatal(err)
	}
	return set
}
