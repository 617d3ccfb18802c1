package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

// newTestUI opens a fresh database and a UI on the headless driver. With
// gpu set the UI gets the process's shared engine (skipping the test when
// there is no Vulkan adapter); without, the engine "fails to open".
func newTestUI(t *testing.T, gpuToo bool, reg Registry) *UI {
	t.Helper()
	a := test.NewTempApp(t)
	db, err := store.Open(filepath.Join(t.TempDir(), store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	return newTestUIOn(t, a, db, gpuToo, reg)
}

func newTestUIOn(t *testing.T, a fyne.App, db *store.DB, gpuToo bool, reg Registry) *UI {
	t.Helper()
	var e *gpu.Engine
	if gpuToo {
		e = testenv.Engine(t)
	}
	u := New(a, Options{DB: db, Registry: reg, KeepEngine: true, Open: func(string) (*gpu.Engine, error) {
		if e == nil {
			return nil, gpu.ErrNoAdapter
		}
		return e, nil
	}})
	t.Cleanup(func() {
		u.Close()
		if err := db.Check(); err != nil {
			t.Errorf("store check: %v", err)
		}
		db.Close()
	})
	return u
}

// tinyModel records the sd-tiny diffusers fixture as the base model.
func tinyModel(t *testing.T, u *UI) store.BaseModel {
	t.Helper()
	m, err := u.AddBaseModel(filepath.Join(testenv.Fixtures(t), "sd-tiny", "diffusers"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// newSubject stores a subject without images.
func newSubject(t *testing.T, u *UI, name, class string) store.Subject {
	t.Helper()
	s := store.Subject{Name: name, Class: class, Identifier: "sks"}
	if err := u.DB.PutSubject(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// loraRun stores a finished run of kind (personalize or align) on the
// subject and base model, with one LoRA checkpoint holding the fixture
// file lora/<file>.
func loraRun(t *testing.T, u *UI, kind store.RunKind, s store.Subject, bm store.BaseModel, file string, step int) (store.Run, store.Checkpoint) {
	t.Helper()
	r := store.Run{Kind: kind, SubjectID: s.ID, BaseModelID: bm.ID, Status: store.StatusDone, Config: json.RawMessage(`{}`)}
	if err := u.DB.PutRun(&r); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(testenv.Fixtures(t), "sd-tiny", "lora", file))
	if err != nil {
		t.Fatal(err)
	}
	c := store.Checkpoint{RunID: r.ID, Step: step, Kind: store.CheckpointLoRA}
	if err := u.DB.PutCheckpoint(&c, data); err != nil {
		t.Fatal(err)
	}
	return r, c
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// markup renders the window (dialogs included) as Fyne's test markup.
func markup(u *UI) string { return test.RenderToMarkup(u.Win.Canvas()) }

// topOverlay returns the topmost dialog, or nil.
func topOverlay(u *UI) fyne.CanvasObject { return u.Win.Canvas().Overlays().Top() }

// findButton finds a visible button with the given text in o's tree.
func findButton(t *testing.T, o fyne.CanvasObject, text string) *widget.Button {
	t.Helper()
	for _, obj := range test.LaidOutObjects(o) {
		if b, ok := obj.(*widget.Button); ok && b.Text == text && b.Visible() {
			return b
		}
	}
	t.Fatalf("no button %q", text)
	return nil
}

// entries returns the entries in o's tree, in layout order.
func entries(o fyne.CanvasObject) []*widget.Entry {
	var out []*widget.Entry
	for _, obj := range test.LaidOutObjects(o) {
		if e, ok := obj.(*widget.Entry); ok {
			out = append(out, e)
		}
	}
	return out
}

// texts joins the text of every label in o's tree.
func texts(o fyne.CanvasObject) string {
	var b strings.Builder
	for _, obj := range test.LaidOutObjects(o) {
		switch w := obj.(type) {
		case *widget.Label:
			b.WriteString(w.Text + "\n")
		case *widget.Entry:
			b.WriteString(w.Text + "\n")
		}
	}
	return b.String()
}
