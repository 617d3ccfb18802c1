package app

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"strconv"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/store"
)

// kindTitle is a run kind as the UI names it.
func kindTitle(k store.RunKind) string {
	switch k {
	case store.KindPersonalize:
		return "Personalize"
	case store.KindAlign:
		return "Align"
	case store.KindGenerate:
		return "Generate"
	case store.KindEvaluate:
		return "Evaluate"
	case store.KindDemo:
		return "Whole method (toy world)"
	}
	return string(k)
}

// statusTitle is a run status as the UI names it.
func statusTitle(s store.RunStatus) string {
	switch s {
	case store.StatusQueued:
		return "Queued"
	case store.StatusRunning:
		return "Running"
	case store.StatusInterrupted:
		return "Interrupted"
	case store.StatusFailed:
		return "Failed"
	case store.StatusDone:
		return "Done"
	}
	return string(s)
}

// fmtDuration is "1h02m", "3m05s" or "12s".
func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

// progressText is "step 3/25 · 2.41 steps/s · ETA 9s".
func progressText(step, total int, rate float64, eta time.Duration) string {
	parts := []string{fmt.Sprintf("step %d/%d", step, total)}
	if rate > 0 {
		if rate >= 1 {
			parts = append(parts, fmt.Sprintf("%.2f steps/s", rate))
		} else {
			parts = append(parts, fmt.Sprintf("%.1f s/step", 1/rate))
		}
		if eta > 0 {
			parts = append(parts, "ETA "+fmtDuration(eta))
		}
	}
	return strings.Join(parts, " · ")
}

// decodeBytes decodes stored image bytes (PNG or JPEG).
func decodeBytes(data []byte) (image.Image, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	return img, err
}

// thumbCache decodes and scales images in the background and keeps the
// thumbnails.
type thumbCache struct {
	size    int
	mu      sync.Mutex
	m       map[string]image.Image
	pending map[string]bool
}

func newThumbCache(size int) *thumbCache {
	return &thumbCache{size: size, m: map[string]image.Image{}, pending: map[string]bool{}}
}

// get returns the thumbnail under key, or nil while it is being made; then
// load's bytes are decoded on a goroutine and ready runs on the Fyne
// goroutine once the thumbnail is in.
func (c *thumbCache) get(key string, load func() ([]byte, error), ready func()) image.Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	if img, ok := c.m[key]; ok {
		return img
	}
	if c.pending[key] {
		return nil
	}
	c.pending[key] = true
	go func() {
		var th image.Image
		if data, err := load(); err == nil {
			if img, err := decodeBytes(data); err == nil {
				th = Thumbnail(img, c.size)
			}
		}
		if th == nil {
			th = image.NewNRGBA(image.Rect(0, 0, 1, 1))
		}
		c.mu.Lock()
		c.m[key] = th
		delete(c.pending, key)
		c.mu.Unlock()
		if ready != nil {
			fyne.Do(ready)
		}
	}()
	return nil
}

// newThumb is an image widget of a fixed minimum size.
func newThumb(size float32) *canvas.Image {
	img := canvas.NewImageFromImage(nil)
	img.FillMode = canvas.ImageFillContain
	img.ScaleMode = canvas.ImageScaleSmooth
	img.SetMinSize(fyne.NewSize(size, size))
	return img
}

// fixedWidth gives o a minimum width (wrapping labels need one).
func fixedWidth(w float32, o fyne.CanvasObject) fyne.CanvasObject {
	r := canvas.NewRectangle(color.Transparent)
	r.SetMinSize(fyne.NewSize(w, 0))
	return container.NewStack(r, o)
}

// field binds a form entry to a value: parse writes the entry's text into
// the value or says what is wrong.
type field struct {
	label string
	entry fyne.CanvasObject
	hint  string
	parse func() error
}

func intField(label string, v *int, lo, hi int, hint string) field {
	e := widget.NewEntry()
	e.SetText(strconv.Itoa(*v))
	return field{label, e, hint, func() error {
		n, err := strconv.Atoi(strings.TrimSpace(e.Text))
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%s: want a whole number from %d to %d, not %q", label, lo, hi, e.Text)
		}
		*v = n
		return nil
	}}
}

func uintField(label string, v *uint64, hint string) field {
	e := widget.NewEntry()
	e.SetText(strconv.FormatUint(*v, 10))
	return field{label, e, hint, func() error {
		n, err := strconv.ParseUint(strings.TrimSpace(e.Text), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: want a whole number of at least 0, not %q", label, e.Text)
		}
		*v = n
		return nil
	}}
}

func floatField(label string, v *float64, lo, hi float64, hint string) field {
	e := widget.NewEntry()
	e.SetText(strconv.FormatFloat(*v, 'g', -1, 64))
	return field{label, e, hint, func() error {
		f, err := strconv.ParseFloat(strings.TrimSpace(e.Text), 64)
		if err != nil || f < lo || f > hi {
			return fmt.Errorf("%s: want a number from %g to %g, not %q", label, lo, hi, e.Text)
		}
		*v = f
		return nil
	}}
}

func textField(label string, v *string, multiline bool, hint string) field {
	e := widget.NewEntry()
	if multiline {
		e = widget.NewMultiLineEntry()
		e.Wrapping = fyne.TextWrapWord
		e.SetMinRowsVisible(3)
	}
	e.SetText(*v)
	return field{label, e, hint, func() error { *v = e.Text; return nil }}
}

func boolField(label string, v *bool, hint string) field {
	c := widget.NewCheck("", nil)
	c.SetChecked(*v)
	return field{label, c, hint, func() error { *v = c.Checked; return nil }}
}

func selectField(label string, v *string, options []string, hint string) field {
	s := widget.NewSelect(options, nil)
	s.SetSelected(*v)
	return field{label, s, hint, func() error {
		if s.Selected == "" {
			return fmt.Errorf("%s: choose one", label)
		}
		*v = s.Selected
		return nil
	}}
}

// formItems turns fields into form rows.
func formItems(fs []field) []*widget.FormItem {
	items := make([]*widget.FormItem, len(fs))
	for i, f := range fs {
		items[i] = widget.NewFormItem(f.label, f.entry)
		items[i].HintText = f.hint
	}
	return items
}

// parseFields parses every field, returning the first error.
func parseFields(fs ...[]field) error {
	for _, group := range fs {
		for _, f := range group {
			if err := f.parse(); err != nil {
				return err
			}
		}
	}
	return nil
}
