package app

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/store"
)

// GalleryView shows generated images, all of them or those of one subject
// or one run, newest first; a tap opens the image with its parameters.
type GalleryView struct {
	u         *UI
	root      fyne.CanvasObject
	Filter    *widget.Select
	Count     *widget.Label
	ExportAll *widget.Button
	Grid      *widget.GridWrap
	Images    []store.GalleryImage // shown, newest first

	filters []galleryFilter
	current store.GalleryFilter
	thumbs  *thumbCache
}

type galleryFilter struct {
	label string
	f     store.GalleryFilter
}

func newGalleryView(u *UI) *GalleryView {
	v := &GalleryView{u: u, thumbs: newThumbCache(200)}
	v.Filter = widget.NewSelect(nil, func(label string) {
		for _, f := range v.filters {
			if f.label == label && f.f != v.current {
				v.current = f.f
				v.load()
			}
		}
	})
	v.Count = widget.NewLabel("")
	v.ExportAll = widget.NewButtonWithIcon("Export images…", theme.DownloadIcon(), v.pickExportDir)
	v.Grid = widget.NewGridWrap(
		func() int { return len(v.Images) },
		func() fyne.CanvasObject {
			img := newThumb(180)
			l := widget.NewLabel("")
			l.Truncation = fyne.TextTruncateEllipsis
			return container.NewBorder(nil, l, nil, nil, img)
		},
		func(id widget.GridWrapItemID, o fyne.CanvasObject) {
			if id >= len(v.Images) {
				return
			}
			g := v.Images[id]
			c := o.(*fyne.Container)
			img := c.Objects[0].(*canvas.Image)
			c.Objects[1].(*widget.Label).SetText(fmt.Sprintf("%d · %s", g.Seed, g.Prompt))
			gid := g.ID
			img.Image = v.thumbs.get(gid, func() ([]byte, error) { return u.DB.GalleryImagePNG(gid) }, func() { v.Grid.RefreshItem(id) })
			img.Refresh()
		},
	)
	v.Grid.OnSelected = func(id widget.GridWrapItemID) {
		v.Grid.UnselectAll()
		if id < len(v.Images) {
			v.ShowImage(v.Images[id])
		}
	}
	title := widget.NewLabelWithStyle("Gallery", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	top := container.NewBorder(nil, nil, widget.NewLabel("Show"), container.NewHBox(v.Count, v.ExportAll), v.Filter)
	v.root = container.NewBorder(container.NewVBox(title, top), nil, nil, nil, v.Grid)
	return v
}

// Refresh rebuilds the filter list and reloads the images.
func (v *GalleryView) Refresh() {
	v.filters = []galleryFilter{{label: "All images"}}
	if subs, err := v.u.DB.Subjects(); err == nil {
		for _, s := range subs {
			v.filters = append(v.filters, galleryFilter{"Subject: " + s.Name, store.GalleryFilter{SubjectID: s.ID}})
		}
	}
	if runs, err := v.u.DB.Runs(store.RunFilter{Kind: store.KindGenerate}); err == nil {
		slices.Reverse(runs)
		for _, r := range runs {
			v.filters = append(v.filters, galleryFilter{"Run: " + runSubtitle(r), store.GalleryFilter{RunID: r.ID}})
		}
	}
	labels := make([]string, len(v.filters))
	sel := ""
	for i, f := range v.filters {
		labels[i] = f.label
		if f.f == v.current {
			sel = f.label
		}
	}
	if sel == "" {
		v.current, sel = store.GalleryFilter{}, labels[0]
	}
	v.Filter.Options = labels
	v.Filter.Selected = sel
	v.Filter.Refresh()
	v.load()
}

func (v *GalleryView) load() {
	imgs, err := v.u.DB.Gallery(v.current)
	if err != nil {
		v.u.showError(err)
		return
	}
	slices.Reverse(imgs)
	v.Images = imgs
	v.Count.SetText(fmt.Sprintf("%d image(s)", len(imgs)))
	showIf(v.ExportAll, len(imgs) > 0)
	v.Grid.Refresh()
}

// ShowFor shows the images of one subject or run in the Gallery tab.
func (v *GalleryView) ShowFor(f store.GalleryFilter) {
	v.current = f
	v.u.ShowTab("Gallery")
	v.Refresh()
}

// Describe gives an image's parameters, one per line.
func (u *UI) Describe(g store.GalleryImage) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Prompt: %s\n", g.Prompt)
	if g.NegativePrompt != "" {
		fmt.Fprintf(&b, "Negative prompt: %s\n", g.NegativePrompt)
	}
	s := g.Sampler
	fmt.Fprintf(&b, "Seed: %d\nSampler: %s, %d steps, guidance %g", g.Seed, s.Name, s.Steps, s.Guidance)
	if s.Eta != 0 {
		fmt.Fprintf(&b, ", eta %g", s.Eta)
	}
	fmt.Fprintf(&b, "\nSize: %dx%d\n", s.Width, s.Height)
	model := "(unknown base model)"
	if m, err := u.DB.BaseModel(g.BaseModelID); err == nil {
		model = m.Name
	}
	if g.CheckpointID != "" {
		model += " + " + u.checkpointLabel(g.CheckpointID)
	}
	fmt.Fprintf(&b, "Model: %s\n", model)
	if len(g.Scores) > 0 {
		names := make([]string, 0, len(g.Scores))
		for k := range g.Scores {
			names = append(names, k)
		}
		slices.Sort(names)
		b.WriteString("Scores:")
		for _, k := range names {
			fmt.Fprintf(&b, " %s %.4g", k, g.Scores[k])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Created: %s", g.Created.Local().Format("2006-01-02 15:04:05"))
	return b.String()
}

// checkpointLabel is "DreamBooth LoRA, step 800" for a checkpoint id.
func (u *UI) checkpointLabel(id string) string {
	c, err := u.DB.Checkpoint(id)
	if err != nil {
		return "checkpoint (deleted)"
	}
	kind := "LoRA"
	if r, err := u.DB.Run(c.RunID); err == nil {
		switch r.Kind {
		case store.KindPersonalize:
			kind = "DreamBooth LoRA"
		case store.KindAlign:
			kind = "aligned LoRA"
		}
	}
	return fmt.Sprintf("%s, step %d", kind, c.Step)
}

// ShowImage opens one image with its parameters and an export button.
func (v *GalleryView) ShowImage(g store.GalleryImage) {
	data, err := v.u.DB.GalleryImagePNG(g.ID)
	if err != nil {
		v.u.showError(err)
		return
	}
	img, err := decodeBytes(data)
	if err != nil {
		v.u.showError(err)
		return
	}
	ci := canvas.NewImageFromImage(img)
	ci.FillMode = canvas.ImageFillContain
	ci.SetMinSize(fyne.NewSize(384, 384))
	info := widget.NewLabel(v.u.Describe(g))
	info.Wrapping = fyne.TextWrapWord
	export := widget.NewButtonWithIcon("Save PNG…", theme.DocumentSaveIcon(), func() {
		d := dialog.NewFileSave(func(w fyne.URIWriteCloser, err error) {
			if err != nil || w == nil {
				v.u.showError(err)
				return
			}
			defer w.Close()
			if _, err := w.Write(data); err != nil {
				v.u.showError(err)
			}
		}, v.u.Win)
		d.SetFileName(imageFileName(g))
		d.Show()
	})
	content := container.NewBorder(nil, nil, ci, nil, container.NewVBox(info, export))
	dialog.NewCustom("Image", "Close", fixedWidth(820, content), v.u.Win).Show()
}

func (v *GalleryView) pickExportDir() {
	imgs := slices.Clone(v.Images)
	d := dialog.NewFolderOpen(func(uri fyne.ListableURI, err error) {
		if err != nil || uri == nil {
			v.u.showError(err)
			return
		}
		n, err := v.u.ExportImages(imgs, uri.Path())
		if err != nil {
			v.u.showError(err)
			return
		}
		dialog.ShowInformation("Export images", fmt.Sprintf("Saved %d PNG file(s) to %s, each with its parameters in the PNG text.", n, uri.Path()), v.u.Win)
	}, v.u.Win)
	d.Resize(fyne.NewSize(800, 560))
	d.Show()
}

// ExportImages writes the images' PNGs (with the parameters in their text
// chunks, as generated) into dir, named <seed>-<prompt words>.png and never
// overwriting a file. It returns how many it wrote.
func (u *UI) ExportImages(imgs []store.GalleryImage, dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	for i, g := range imgs {
		data, err := u.DB.GalleryImagePNG(g.ID)
		if err != nil {
			return i, err
		}
		base := strings.TrimSuffix(imageFileName(g), ".png")
		path := filepath.Join(dir, base+".png")
		for k := 2; ; k++ {
			if _, err := os.Stat(path); os.IsNotExist(err) {
				break
			}
			path = filepath.Join(dir, fmt.Sprintf("%s-%d.png", base, k))
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return i, err
		}
	}
	return len(imgs), nil
}

// imageFileName is "<seed>-<first prompt words>.png".
func imageFileName(g store.GalleryImage) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(g.Prompt) {
		if b.Len() >= 40 {
			break
		}
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	name := fmt.Sprint(g.Seed)
	if b.Len() > 0 {
		name += "-" + b.String()
	}
	return name + ".png"
}
