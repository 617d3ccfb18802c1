package app

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/storage"
	"fyne.io/fyne/v2/test"

	"github.com/instructbooth/instructbooth/internal/testenv"

	"github.com/instructbooth/instructbooth/store"
)

// TestUI_selfCheck waits for the adapter name in Settings, taps the
// self-check button and expects the run to pass with a full progress bar.
func TestUI_selfCheck(t *testing.T) {
	u := newTestUI(t, true, nil)
	e := testenv.Engine(t)
	eventually(t, 30*time.Second, "the adapter name", func() bool { return strings.Contains(u.Adapter.Text, e.Info.Name) })
	u.ShowTab("Settings")
	test.Tap(u.Check)
	if !u.WaitCheck(2 * time.Minute) {
		t.Fatal("self-check did not finish")
	}
	eventually(t, 5*time.Second, "the verdict", func() bool { return strings.Contains(u.Status.Text, "Self-check passed") })
	if u.Progress.Value != 1 || !strings.Contains(u.Log.Text, "] ok ") {
		t.Errorf("progress %v, log %q", u.Progress.Value, u.Log.Text)
	}
}

// TestUI_noAdapter shows the engine's error instead of an adapter name.
func TestUI_noAdapter(t *testing.T) {
	u := newTestUI(t, false, nil)
	eventually(t, 10*time.Second, "the no-adapter message", func() bool { return strings.Contains(u.Adapter.Text, "mesa-vulkan-drivers") })
	if !u.Check.Disabled() {
		t.Error("self-check enabled without an engine")
	}
}

func writePNG(t *testing.T, path string, w, h int, c color.NRGBA) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < w*h; i++ {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = c.R+uint8(i%7), c.G, c.B, 255
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestImport_folder drops a folder holding good PNG and JPEG photos and
// bad files (text, a truncated PNG, a 4x4 image, a directory that cannot
// be read) on the library: a subject named after the folder is created
// with exactly the good images, and the report dialog lists every bad file
// with its reason. Dropping more on the subject's page extends it and
// counts duplicates.
func TestImport_folder(t *testing.T) {
	u := newTestUI(t, false, nil)
	dir := filepath.Join(t.TempDir(), "Rex")
	if err := os.MkdirAll(filepath.Join(dir, "more"), 0o755); err != nil {
		t.Fatal(err)
	}
	writePNG(t, filepath.Join(dir, "a.png"), 40, 30, color.NRGBA{200, 10, 10, 255})
	writePNG(t, filepath.Join(dir, "more", "b.png"), 32, 48, color.NRGBA{10, 200, 10, 255})
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 64, 64)), nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "c.jpg"), jb.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644)
	good, _ := os.ReadFile(filepath.Join(dir, "a.png"))
	os.WriteFile(filepath.Join(dir, "broken.png"), good[:len(good)/2], 0o644)
	writePNG(t, filepath.Join(dir, "tiny.png"), 4, 4, color.NRGBA{1, 2, 3, 255})
	os.WriteFile(filepath.Join(dir, ".DS_Store"), []byte("junk"), 0o644)

	out, err := u.ImportAndReport("", []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if !out.Created || out.Subject.Name != "Rex" || out.Added != 3 || len(out.Bad) != 3 {
		t.Fatalf("outcome %+v", out)
	}
	s, err := u.DB.Subject(out.Subject.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ref := range s.Images {
		names = append(names, ref.Name)
	}
	if strings.Join(names, ",") != "a.png,c.jpg,b.png" {
		t.Errorf("stored images %v", names)
	}
	if s.Identifier != DefaultIdentifier {
		t.Errorf("identifier %q", s.Identifier)
	}
	stored, _ := u.DB.SubjectImage(s.ID, s.Images[0].Hash)
	if !bytes.Equal(stored, good) {
		t.Error("a.png was not stored byte for byte")
	}
	// The dialog names each bad file and why.
	d := texts(topOverlay(u))
	for _, want := range []string{"Created subject “Rex” with 3 image(s)", "3 file(s) could not be used",
		"notes.txt: not an image (not PNG, JPEG or WebP)", "broken.png: truncated or damaged png", "tiny.png: png image of 4x4 pixels is too small"} {
		if !strings.Contains(d, want) {
			t.Errorf("dialog lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, ".DS_Store") {
		t.Error("hidden file reported")
	}
	// The subject page is open; the library shows the subject.
	if u.Subject.ID() != s.ID || u.Subject.Name.Text != "Rex" || len(u.Subject.Images.Objects) != 3 {
		t.Errorf("subject page: id %q name %q, %d images", u.Subject.ID(), u.Subject.Name.Text, len(u.Subject.Images.Objects))
	}
	if len(u.Library.Shown) != 1 {
		t.Errorf("library shows %d subjects", len(u.Library.Shown))
	}

	// Extend it from its page: one new file, one duplicate.
	topOverlay(u).Hide()
	writePNG(t, filepath.Join(t.TempDir(), "d.png"), 20, 20, color.NRGBA{9, 9, 200, 255})
	extra := filepath.Join(t.TempDir(), "d.png")
	writePNG(t, extra, 20, 20, color.NRGBA{9, 9, 200, 255})
	out, err = u.ImportAndReport(u.Subject.ID(), []string{extra, filepath.Join(dir, "a.png")})
	if err != nil {
		t.Fatal(err)
	}
	if out.Created || out.Added != 1 || out.Duplicates != 1 || len(out.Subject.Images) != 4 {
		t.Errorf("extend outcome %+v", out)
	}
	if d := texts(topOverlay(u)); !strings.Contains(d, "Added 1 image(s) to “Rex”. 1 image(s) were already there") {
		t.Errorf("extend dialog:\n%s", d)
	}

	// Only bad files: no subject is created.
	topOverlay(u).Hide()
	u.ShowLibrary()
	out, _ = u.ImportAndReport("", []string{filepath.Join(dir, "notes.txt")})
	if out.Subject.ID != "" || len(out.Bad) != 1 {
		t.Errorf("bad-only outcome %+v", out)
	}
	if subs, _ := u.DB.Subjects(); len(subs) != 1 {
		t.Errorf("%d subjects after a bad-only import", len(subs))
	}
}

// TestSubject_editAndSearch edits a subject's fields on its page, saves
// them, and finds it by the new class in the library search.
func TestSubject_editAndSearch(t *testing.T) {
	u := newTestUI(t, false, nil)
	a := newSubject(t, u, "Rex", "")
	newSubject(t, u, "Mug", "mug")
	u.OpenSubject(a.ID)
	if !strings.Contains(u.Subject.PromptHint.Text, "Set a class noun") {
		t.Errorf("hint %q", u.Subject.PromptHint.Text)
	}
	u.Subject.Class.SetText("corgi")
	u.Subject.Description.SetText("red scarf")
	u.Subject.Identifier.SetText("two words")
	test.Tap(u.Subject.Save)
	if d := texts(topOverlay(u)); !strings.Contains(d, "must be one word") {
		t.Errorf("no error for a two-word identifier:\n%s", d)
	}
	topOverlay(u).Hide()
	u.Subject.Identifier.SetText("zwx")
	test.Tap(u.Subject.Save)
	got, _ := u.DB.Subject(a.ID)
	if got.Class != "corgi" || got.Identifier != "zwx" || got.Description != "red scarf" || u.Subject.Saved.Text != "Saved" {
		t.Errorf("stored %+v, status %q", got, u.Subject.Saved.Text)
	}
	if u.Subject.PromptHint.Text != "Prompts say: “a photo of zwx corgi”" {
		t.Errorf("hint %q", u.Subject.PromptHint.Text)
	}
	u.ShowLibrary()
	u.Library.Search.SetText("CORGI")
	if len(u.Library.Shown) != 1 || u.Library.Shown[0].ID != a.ID {
		t.Errorf("search shows %v", u.Library.Shown)
	}
	u.Library.Search.SetText("nothing like it")
	if len(u.Library.Shown) != 0 || !u.Library.Empty.Visible() {
		t.Error("search for nothing shows subjects")
	}
}

// TestActions_notAvailable: without a trainer the Personalize action says
// so; without a base model Generate explains where to set one.
func TestActions_notAvailable(t *testing.T) {
	u := newTestUI(t, false, nil)
	s := newSubject(t, u, "Rex", "dog")
	u.OpenSubject(s.ID)
	test.Tap(u.Subject.Personalize)
	if d := texts(topOverlay(u)); !strings.Contains(d, "Personalize is not available in this build yet") {
		t.Errorf("dialog:\n%s", d)
	}
	topOverlay(u).Hide()
	test.Tap(u.Subject.Generate)
	d := texts(topOverlay(u))
	if !strings.Contains(d, "No base model is set") || !strings.Contains(d, "toy world demo") {
		t.Errorf("dialog:\n%s", d)
	}
	if !u.Settings.NoModel.Visible() {
		t.Error("Settings does not say that no base model is set")
	}
}

// TestCurve_draw: points land in step order, a repeated step replaces its
// value, and the raster draws the series' colour where the line goes.
func TestCurve_draw(t *testing.T) {
	test.NewTempApp(t)
	c := NewCurve()
	c.Add(2, map[string]float64{"loss": 1})
	c.Add(0, map[string]float64{"loss": 3})
	c.Add(1, map[string]float64{"loss": 2})
	c.Add(1, map[string]float64{"loss": 2.5})
	pts := c.Series("loss")
	if len(pts) != 3 || pts[0] != (store.Point{Step: 0, Value: 3}) || pts[1].Value != 2.5 || pts[2].Step != 2 {
		t.Fatalf("points %v", pts)
	}
	img := c.draw(100, 50).(*image.NRGBA)
	col := curveColors[0]
	// Highest value (3 at step 0) at the top left, lowest at the bottom right.
	if img.NRGBAAt(4, 4) != col || img.NRGBAAt(95, 45) != col {
		t.Errorf("line ends: %v %v", img.NRGBAAt(4, 4), img.NRGBAAt(95, 45))
	}
	if img.NRGBAAt(4, 45) == col {
		t.Error("colour where the line does not go")
	}
	if !strings.Contains(c.legend.Text, "loss 1 (1…3)") {
		t.Errorf("legend %q", c.legend.Text)
	}
}

// TestThumbnail scales the longer side to the limit with a box filter.
func TestThumbnail(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 400, 200))
	for x := 0; x < 200; x++ {
		for y := 0; y < 200; y++ {
			img.SetNRGBA(x, y, color.NRGBA{255, 255, 255, 255})
		}
	}
	th := Thumbnail(img, 100)
	if th.Bounds().Dx() != 100 || th.Bounds().Dy() != 50 {
		t.Fatalf("size %v", th.Bounds())
	}
	if th.NRGBAAt(10, 10).R != 255 || th.NRGBAAt(90, 10).R != 0 || th.NRGBAAt(90, 10).A != 0 {
		t.Errorf("pixels %v %v", th.NRGBAAt(10, 10), th.NRGBAAt(90, 10))
	}
}

// TestDrop: dropping a folder on the window (outside a subject's page)
// creates a subject from it in the background and reports it; dropping
// photos while the subject's page is open extends that subject.
func TestDrop(t *testing.T) {
	u := newTestUI(t, false, nil)
	dir := filepath.Join(t.TempDir(), "Mug")
	os.MkdirAll(dir, 0o755)
	writePNG(t, filepath.Join(dir, "1.png"), 16, 16, color.NRGBA{200, 0, 0, 255})
	u.ShowTab("Jobs")
	u.Drop([]fyne.URI{storage.NewFileURI(dir)})
	var subs []store.Subject
	eventually(t, 10*time.Second, "the dropped subject", func() bool {
		subs, _ = u.DB.Subjects()
		return len(subs) == 1 && len(subs[0].Images) == 1 && topOverlay(u) != nil
	})
	if subs[0].Name != "Mug" || u.Subject.ID() != subs[0].ID || u.Tabs.Selected().Text != "Library" {
		t.Errorf("subject %q, page %q, tab %q", subs[0].Name, u.Subject.ID(), u.Tabs.Selected().Text)
	}
	topOverlay(u).Hide()
	more := filepath.Join(t.TempDir(), "2.png")
	writePNG(t, more, 16, 16, color.NRGBA{0, 0, 200, 255})
	u.Drop([]fyne.URI{storage.NewFileURI(more)})
	eventually(t, 10*time.Second, "the second photo", func() bool {
		s, _ := u.DB.Subject(subs[0].ID)
		return len(s.Images) == 2
	})
	if subs, _ = u.DB.Subjects(); len(subs) != 1 {
		t.Errorf("%d subjects after dropping on the subject's page", len(subs))
	}
}
