package app

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/store"
)

// CompareView generates one image per model of a subject (base,
// DreamBooth-only, aligned) from the same prompt and seed and shows them
// side by side; the user's "which is better" answer is stored as a rating
// between two of them.
type CompareView struct {
	u        *UI
	root     fyne.CanvasObject
	Subject  *widget.Select
	Prompt   *widget.Entry
	Seed     *widget.Entry
	Steps    *widget.Entry
	Start    *widget.Button
	Note     *widget.Label
	A, B     *widget.Select
	BetterA  *widget.Button
	Tie      *widget.Button
	BetterB  *widget.Button
	Tally    *widget.Label
	Panels   []*ComparePanel
	panelBox *fyne.Container

	subjects []store.Subject
	subject  store.Subject
}

// ComparePanel is one model's column.
type ComparePanel struct {
	Choice ModelChoice
	RunID  string             // the generate run making its image
	Image  store.GalleryImage // set once the image exists
	title  *widget.Label
	status *widget.Label
	img    *canvas.Image
	root   fyne.CanvasObject
}

func newCompareView(u *UI) *CompareView {
	v := &CompareView{u: u}
	v.Subject = widget.NewSelect(nil, func(name string) {
		for _, s := range v.subjects {
			if s.Name == name && s.ID != v.subject.ID {
				v.setSubject(s)
			}
		}
	})
	v.Prompt = widget.NewEntry()
	v.Seed = widget.NewEntry()
	v.Steps = widget.NewEntry()
	v.Steps.SetText(strconv.Itoa(generate.DefaultSteps))
	v.Start = widget.NewButtonWithIcon("Generate side by side", theme.MediaPlayIcon(), func() {
		if err := v.Generate(); err != nil {
			u.showError(err)
		}
	})
	v.Start.Importance = widget.HighImportance
	v.Note = widget.NewLabel("")
	v.Note.Wrapping = fyne.TextWrapWord
	v.A = widget.NewSelect(nil, nil)
	v.B = widget.NewSelect(nil, nil)
	rate := func(c store.Choice) func() {
		return func() {
			if err := v.Rate(c); err != nil {
				u.showError(err)
			}
		}
	}
	v.BetterA = widget.NewButton("A is better", rate(store.ChoiceA))
	v.Tie = widget.NewButton("About the same", rate(store.ChoiceTie))
	v.BetterB = widget.NewButton("B is better", rate(store.ChoiceB))
	v.Tally = widget.NewLabel("")
	form := widget.NewForm(
		widget.NewFormItem("Subject", v.Subject),
		widget.NewFormItem("Prompt", v.Prompt),
		widget.NewFormItem("Seed", v.Seed),
		widget.NewFormItem("Steps", v.Steps),
	)
	v.panelBox = container.NewGridWithColumns(3)
	rating := widget.NewCard("Which is better?", "Judge how well each image shows your subject doing what the prompt says.",
		container.NewVBox(container.NewGridWithColumns(2, container.NewBorder(nil, nil, widget.NewLabel("A"), nil, v.A),
			container.NewBorder(nil, nil, widget.NewLabel("B"), nil, v.B)),
			container.NewGridWithColumns(3, v.BetterA, v.Tie, v.BetterB), v.Tally))
	title := widget.NewLabelWithStyle("Compare models", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	v.root = container.NewBorder(container.NewVBox(title, form, container.NewHBox(v.Start), v.Note), nil, nil, nil,
		container.NewVScroll(container.NewVBox(v.panelBox, rating)))
	return v
}

// Refresh reloads the subject list.
func (v *CompareView) Refresh() {
	subs, err := v.u.DB.Subjects()
	if err != nil {
		v.u.showError(err)
		return
	}
	v.subjects = subs
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.Name
	}
	v.Subject.Options = names
	v.Subject.Refresh()
	if v.subject.ID == "" && len(subs) > 0 {
		v.setSubject(subs[0])
	} else if v.subject.ID != "" {
		if s, err := v.u.DB.Subject(v.subject.ID); err == nil {
			v.subject = s
		}
		v.updateNote()
	}
}

// ShowFor opens the Compare tab on a subject.
func (v *CompareView) ShowFor(subjectID string) {
	v.u.ShowTab("Compare")
	if s, err := v.u.DB.Subject(subjectID); err == nil {
		v.setSubject(s)
	}
}

func (v *CompareView) setSubject(s store.Subject) {
	v.subject = s
	v.Subject.Selected = s.Name
	v.Subject.Refresh()
	v.Prompt.SetText(promptFor("a photo of {id} {class} cooking a gourmet meal", s))
	v.Seed.SetText(strconv.Itoa(int(rand.Uint32() % 100000)))
	v.Panels = nil
	v.panelBox.Objects = nil
	v.panelBox.Refresh()
	v.updateRating()
	v.updateNote()
}

// Variants are the models compared for the subject: the base model, its
// newest DreamBooth model and its newest aligned model (those that exist).
func (v *CompareView) Variants() []ModelChoice {
	all := v.u.ModelChoices(v.subject.ID)
	out := []ModelChoice{all[0]}
	for _, kind := range []store.RunKind{store.KindPersonalize, store.KindAlign} {
		for _, m := range all[1:] {
			if m.Kind == kind {
				m.Label = strings.SplitN(m.Label, " (", 2)[0]
				if kind == store.KindPersonalize {
					m.Label = "DreamBooth only"
				}
				out = append(out, m)
				break
			}
		}
	}
	return out
}

func (v *CompareView) updateNote() {
	switch n := len(v.Variants()); {
	case v.subject.ID == "":
		v.Note.SetText("Add a subject in the Library first.")
	case n == 1:
		v.Note.SetText("Only the base model exists for " + v.subject.Name + ": personalize it (and align it) to compare.")
	case n == 2:
		v.Note.SetText("Base model and DreamBooth-only model; align " + v.subject.Name + " to add the aligned model.")
	default:
		v.Note.SetText("Base, DreamBooth-only and aligned models, on the same prompt and seed.")
	}
}

// Generate starts one generate run per variant with the same prompt, seed
// and steps, and lays out one panel per variant.
func (v *CompareView) Generate() error {
	if v.subject.ID == "" {
		return errors.New("choose a subject first")
	}
	seed, err := strconv.ParseUint(strings.TrimSpace(v.Seed.Text), 10, 64)
	if err != nil {
		return fmt.Errorf("seed: want a whole number, not %q", v.Seed.Text)
	}
	steps, err := strconv.Atoi(strings.TrimSpace(v.Steps.Text))
	if err != nil || steps < 1 || steps > 1000 {
		return fmt.Errorf("steps: want a whole number from 1 to 1000, not %q", v.Steps.Text)
	}
	if strings.TrimSpace(v.Prompt.Text) == "" {
		return errors.New("write a prompt first")
	}
	if _, ok := v.u.DefaultBaseModel(); !ok {
		v.u.showNoBaseModel()
		return nil
	}
	v.Panels = nil
	v.panelBox.Objects = nil
	for _, m := range v.Variants() {
		cfg := DefaultGenerateConfig()
		cfg.Prompt, cfg.Seed, cfg.Steps, cfg.Count, cfg.CheckpointID = v.Prompt.Text, seed, steps, 1, m.CheckpointID
		r, err := v.u.StartRun(store.KindGenerate, v.subject.ID, m.RunID, cfg)
		if err != nil {
			return err
		}
		p := newComparePanel(m, r.ID)
		v.Panels = append(v.Panels, p)
		v.panelBox.Add(p.root)
	}
	v.panelBox.Refresh()
	v.updateRating()
	v.u.Jobs.Refresh()
	return nil
}

func newComparePanel(m ModelChoice, runID string) *ComparePanel {
	p := &ComparePanel{Choice: m, RunID: runID}
	p.title = widget.NewLabelWithStyle(m.Label, fyne.TextAlignCenter, fyne.TextStyle{Bold: true})
	p.status = widget.NewLabelWithStyle("Queued", fyne.TextAlignCenter, fyne.TextStyle{})
	p.img = newThumb(256)
	p.root = container.NewBorder(p.title, p.status, nil, nil, p.img)
	return p
}

func (v *CompareView) update(up Update) {
	for _, p := range v.Panels {
		if p.RunID != up.Run.ID {
			continue
		}
		pr := up.Run.Progress
		switch up.Run.Status {
		case store.StatusRunning:
			p.status.SetText(progressText(pr.Step, pr.Total, up.Rate, up.ETA))
		case store.StatusDone:
			imgs, err := v.u.DB.Gallery(store.GalleryFilter{RunID: p.RunID})
			if err != nil || len(imgs) == 0 {
				p.status.SetText("no image")
				continue
			}
			p.Image = imgs[0]
			if data, err := v.u.DB.GalleryImagePNG(p.Image.ID); err == nil {
				if img, err := decodeBytes(data); err == nil {
					p.img.Image = img
					p.img.Refresh()
				}
			}
			p.status.SetText(fmt.Sprintf("seed %d", p.Image.Seed))
		default:
			p.status.SetText(statusTitle(up.Run.Status) + ": " + up.Run.Error)
		}
		if up.Preview != nil {
			p.img.Image = up.Preview
			p.img.Refresh()
		}
	}
	v.updateRating()
}

// updateRating offers the finished panels as A and B. Whenever another
// image is finished the pair goes back to the default: the two newest
// models, i.e. DreamBooth-only against aligned (or the base model against
// DreamBooth when there is no aligned model).
func (v *CompareView) updateRating() {
	var labels []string
	for _, p := range v.Panels {
		if p.Image.ID != "" {
			labels = append(labels, p.Choice.Label)
		}
	}
	grew := len(labels) != len(v.A.Options)
	v.A.Options, v.B.Options = labels, labels
	if len(labels) >= 2 {
		if grew || !contains(labels, v.A.Selected) || !contains(labels, v.B.Selected) || v.A.Selected == v.B.Selected {
			v.A.Selected, v.B.Selected = labels[len(labels)-2], labels[len(labels)-1]
		}
	} else {
		v.A.Selected, v.B.Selected = "", ""
	}
	v.A.Refresh()
	v.B.Refresh()
	ready := len(labels) >= 2
	for _, b := range []*widget.Button{v.BetterA, v.Tie, v.BetterB} {
		if ready {
			b.Enable()
		} else {
			b.Disable()
		}
	}
	v.showTally()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (v *CompareView) panel(label string) *ComparePanel {
	for _, p := range v.Panels {
		if p.Choice.Label == label && p.Image.ID != "" {
			return p
		}
	}
	return nil
}

// Rate stores the user's choice between the images of A and B as a
// rating. RunA and RunB are the training runs of the two models (empty for
// the base model), so that store.PreferenceRate tallies models.
func (v *CompareView) Rate(c store.Choice) error {
	a, b := v.panel(v.A.Selected), v.panel(v.B.Selected)
	if a == nil || b == nil || a == b {
		return errors.New("choose two different finished images as A and B")
	}
	r := store.Rating{Prompt: a.Image.Prompt, ImageA: a.Image.ID, ImageB: b.Image.ID, RunA: a.Choice.RunID, RunB: b.Choice.RunID, Choice: c}
	if err := v.u.DB.PutRating(&r); err != nil {
		return err
	}
	v.showTally()
	return nil
}

func (v *CompareView) showTally() {
	a, b := v.panel(v.A.Selected), v.panel(v.B.Selected)
	if a == nil || b == nil || a == b {
		v.Tally.SetText("")
		return
	}
	rate, n, err := v.u.DB.PreferenceRate(a.Choice.RunID, b.Choice.RunID)
	if err != nil || n == 0 {
		v.Tally.SetText("No ratings of these two models yet.")
		return
	}
	v.Tally.SetText(fmt.Sprintf("%s preferred over %s in %.0f%% of %d rating(s).", a.Choice.Label, b.Choice.Label, 100*rate, n))
}
