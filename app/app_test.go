package app

import (
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/gpu"
)

// TestUI_selfCheck opens the window on the headless driver, waits for the
// adapter name, taps the self-check button and expects the run to pass with
// a full progress bar.
func TestUI_selfCheck(t *testing.T) {
	a := test.NewTempApp(t)
	u := New(a, func() (*gpu.Engine, error) { return gpu.Open(gpu.Options{}) })
	defer u.Close()
	deadline := time.Now().Add(30 * time.Second)
	for u.Engine() == nil && !strings.Contains(u.Adapter.Text, "no ") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	e := u.Engine()
	if e == nil {
		if strings.Contains(u.Adapter.Text, "no Vulkan") {
			t.Skip(u.Adapter.Text)
		}
		t.Fatalf("engine did not open: %q", u.Adapter.Text)
	}
	waitText(t, u.Adapter, e.Info.Name)
	test.Tap(u.Check)
	if !u.WaitCheck(2 * time.Minute) {
		t.Fatal("self-check did not finish")
	}
	waitText(t, u.Status, "Self-check passed")
	if u.Progress.Value != 1 || !strings.Contains(u.Log.Text, "] ok ") {
		t.Errorf("progress %v, log %q", u.Progress.Value, u.Log.Text)
	}
}

// TestUI_noAdapter shows the engine's error instead of an adapter name.
func TestUI_noAdapter(t *testing.T) {
	a := test.NewTempApp(t)
	u := New(a, func() (*gpu.Engine, error) { return nil, gpu.ErrNoAdapter })
	waitText(t, u.Adapter, "mesa-vulkan-drivers")
	if !u.Check.Disabled() {
		t.Error("self-check enabled without an engine")
	}
}

// waitText waits until the label (updated from background goroutines)
// contains want.
func waitText(t *testing.T, l *widget.Label, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(l.Text, want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("label %q never contained %q", l.Text, want)
}
