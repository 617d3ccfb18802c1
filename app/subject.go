package app

import (
	"fmt"
	"slices"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/store"
)

// SubjectPage shows one subject: its name, identifier, class noun and
// description (editable, saved to the store), its images, the actions
// (Personalize, Align, Generate, Evaluate) and its runs.
type SubjectPage struct {
	u    *UI
	root fyne.CanvasObject
	id   string
	subj store.Subject

	Title       *widget.Label
	Name        *widget.Entry
	Identifier  *widget.Entry
	Class       *widget.Entry
	Description *widget.Entry
	PromptHint  *widget.Label
	Save        *widget.Button
	Saved       *widget.Label
	ImageCount  *widget.Label
	Images      *fyne.Container

	Personalize, Align, Generate, Evaluate *widget.Button
	// TryIt starts a demo run (the whole method) on the toy subject; its
	// card shows on the toy subject's page only.
	TryIt   *widget.Button
	tryCard *widget.Card

	runs   *fyne.Container
	cards  map[string]*RunCard
	thumbs *thumbCache
}

func newSubjectPage(u *UI) *SubjectPage {
	p := &SubjectPage{u: u, cards: map[string]*RunCard{}, thumbs: newThumbCache(200)}
	p.Title = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	back := widget.NewButtonWithIcon("Library", theme.NavigateBackIcon(), u.ShowLibrary)
	del := widget.NewButtonWithIcon("Delete subject", theme.DeleteIcon(), p.confirmDelete)
	header := container.NewBorder(nil, nil, back, del, p.Title)

	p.Name = widget.NewEntry()
	p.Identifier = widget.NewEntry()
	p.Class = widget.NewEntry()
	p.Class.SetPlaceHolder("dog, cat, toy, person, mug…")
	p.Description = widget.NewMultiLineEntry()
	p.Description.Wrapping = fyne.TextWrapWord
	p.Description.SetMinRowsVisible(2)
	p.Description.SetPlaceHolder("Optional notes: what makes this subject recognisable")
	p.PromptHint = widget.NewLabel("")
	p.Saved = widget.NewLabel("")
	for _, e := range []*widget.Entry{p.Name, p.Identifier, p.Class, p.Description} {
		e.OnChanged = func(string) { p.edited() }
	}
	p.Save = widget.NewButtonWithIcon("Save", theme.DocumentSaveIcon(), func() {
		if err := p.SaveChanges(); err != nil {
			u.showError(err)
		}
	})
	form := widget.NewForm(
		widget.NewFormItem("Name", p.Name),
		&widget.FormItem{Text: "Identifier", Widget: p.Identifier, HintText: "a rare word that will mean this subject (DreamBooth's “sks”)"},
		&widget.FormItem{Text: "Class noun", Widget: p.Class, HintText: "what kind of thing it is; keeps the model's idea of the class intact"},
		widget.NewFormItem("Description", p.Description),
	)
	details := widget.NewCard("Subject", "", container.NewVBox(form, p.PromptHint, container.NewHBox(p.Save, p.Saved)))

	p.ImageCount = widget.NewLabel("")
	p.Images = container.NewGridWrap(fyne.NewSize(120, 150))
	addFiles := widget.NewButtonWithIcon("Add photo…", theme.FileImageIcon(), p.pickFile)
	addFolder := widget.NewButtonWithIcon("Add folder…", theme.FolderOpenIcon(), func() { u.Library.pickFolder(p.id) })
	images := widget.NewCard("Photos", "Drop more photos anywhere on the window to add them.",
		container.NewVBox(container.NewHBox(p.ImageCount, addFiles, addFolder), p.Images))

	p.Personalize = widget.NewButtonWithIcon("Personalize…", theme.AccountIcon(), func() { u.ShowActionForm(store.KindPersonalize, p.id) })
	p.Align = widget.NewButtonWithIcon("Align…", theme.ConfirmIcon(), func() { u.ShowActionForm(store.KindAlign, p.id) })
	p.Generate = widget.NewButtonWithIcon("Generate…", theme.MediaPlayIcon(), func() { u.ShowActionForm(store.KindGenerate, p.id) })
	p.Evaluate = widget.NewButtonWithIcon("Evaluate…", theme.InfoIcon(), func() { u.ShowActionForm(store.KindEvaluate, p.id) })
	p.Personalize.Importance = widget.HighImportance
	gallery := widget.NewButtonWithIcon("Gallery", theme.GridIcon(), func() { u.Gallery.ShowFor(store.GalleryFilter{SubjectID: p.id}) })
	compare := widget.NewButtonWithIcon("Compare", theme.ViewRestoreIcon(), func() { u.Compare.ShowFor(p.id) })
	steps := widget.NewLabel("1. Personalize teaches the model your subject (DreamBooth).  2. Align makes it follow prompts " +
		"(reinforcement learning with a reward model).  3. Generate, Evaluate and Compare show what it learned.")
	steps.Wrapping = fyne.TextWrapWord
	actions := widget.NewCard("Actions", "", container.NewVBox(steps,
		container.NewGridWithColumns(3, p.Personalize, p.Align, p.Generate, p.Evaluate, gallery, compare)))

	p.TryIt = widget.NewButtonWithIcon("Try the whole method", theme.MediaFastForwardIcon(), p.confirmDemo)
	p.TryIt.Importance = widget.HighImportance
	tryText := widget.NewLabel(demoExplanation)
	tryText.Wrapping = fyne.TextWrapWord
	p.tryCard = widget.NewCard("Toy world demo", "", container.NewVBox(tryText, container.NewHBox(p.TryIt)))
	p.tryCard.Hide()

	p.runs = container.NewVBox()
	runs := widget.NewCard("Runs", "", p.runs)
	split := container.NewHSplit(container.NewVScroll(container.NewVBox(details, p.tryCard, actions)),
		container.NewVScroll(container.NewVBox(images, runs)))
	split.Offset = 0.5
	p.root = container.NewBorder(header, nil, nil, nil, split)
	return p
}

// ID is the subject shown, or "" when none is.
func (p *SubjectPage) ID() string { return p.id }

// Load shows the subject with the given id.
func (p *SubjectPage) Load(id string) error {
	s, err := p.u.DB.Subject(id)
	if err != nil {
		return err
	}
	p.id, p.subj = id, s
	p.Name.SetText(s.Name)
	p.Identifier.SetText(s.Identifier)
	p.Class.SetText(s.Class)
	p.Description.SetText(s.Description)
	p.Saved.SetText("")
	p.edited()
	p.Saved.SetText("")
	p.refreshImages()
	p.refreshRuns()
	showIf(p.tryCard, isToySubject(s) && p.u.Runner.Available(store.KindDemo))
	return nil
}

// confirmDemo explains the demo run and starts it.
func (p *SubjectPage) confirmDemo() {
	msg := widget.NewLabel(demoExplanation + "\n\nProgress, curves and the log are on the run's card; when it is done, " +
		"Results shows the three models' scores and Images the evaluation's pictures.")
	msg.Wrapping = fyne.TextWrapWord
	dialog.NewCustomConfirm("Try the whole method", "Start", "Cancel", fixedWidth(560, msg), func(ok bool) {
		if !ok {
			return
		}
		if _, err := p.u.StartDemo(); err != nil {
			p.u.showError(err)
			return
		}
		p.refreshRuns()
		p.u.Jobs.Refresh()
	}, p.u.Win).Show()
}

func (p *SubjectPage) edited() {
	p.Title.SetText(p.Name.Text)
	id, class := strings.TrimSpace(p.Identifier.Text), strings.TrimSpace(p.Class.Text)
	if class == "" {
		p.PromptHint.SetText("Set a class noun: prompts will then say “a photo of " + id + " <class>”.")
	} else {
		p.PromptHint.SetText("Prompts say: “a photo of " + id + " " + class + "”")
	}
	p.Saved.SetText("Unsaved changes")
}

// SaveChanges writes the edited fields to the store.
func (p *SubjectPage) SaveChanges() error {
	s := p.subj
	s.Name = strings.TrimSpace(p.Name.Text)
	s.Identifier = strings.TrimSpace(p.Identifier.Text)
	s.Class = strings.TrimSpace(p.Class.Text)
	s.Description = strings.TrimSpace(p.Description.Text)
	switch {
	case s.Name == "":
		return fmt.Errorf("the subject needs a name")
	case s.Identifier == "" || strings.ContainsAny(s.Identifier, " \t\n"):
		return fmt.Errorf("the identifier must be one word (like “sks”), not %q", s.Identifier)
	case strings.ContainsAny(s.Class, "\t\n"):
		return fmt.Errorf("the class noun must be one line")
	}
	if err := p.u.DB.PutSubject(&s); err != nil {
		return err
	}
	p.subj = s
	p.Saved.SetText("Saved")
	p.u.Library.Refresh()
	return nil
}

func (p *SubjectPage) refreshImages() {
	s := p.subj
	p.ImageCount.SetText(fmt.Sprintf("%d photo(s)", len(s.Images)))
	if len(s.Images) < 3 {
		p.ImageCount.SetText(fmt.Sprintf("%d photo(s) — DreamBooth wants 3 to 10", len(s.Images)))
	}
	p.Images.Objects = nil
	for _, ref := range s.Images {
		img := newThumb(110)
		sid, h := s.ID, ref.Hash
		var set func()
		set = func() {
			img.Image = p.thumbs.get(sid+"/"+h, func() ([]byte, error) { return p.u.DB.SubjectImage(sid, h) }, set)
			img.Refresh()
		}
		set()
		name := widget.NewLabel(ref.Name)
		name.Truncation = fyne.TextTruncateEllipsis
		remove := widget.NewButtonWithIcon("", theme.DeleteIcon(), func() { p.removeImage(h, ref.Name) })
		remove.Importance = widget.LowImportance
		p.Images.Add(container.NewBorder(nil, container.NewBorder(nil, nil, nil, remove, name), nil, nil, img))
	}
	p.Images.Refresh()
}

func (p *SubjectPage) removeImage(hash, name string) {
	dialog.ShowConfirm("Remove photo", fmt.Sprintf("Remove %s from %s?", name, p.subj.Name), func(ok bool) {
		if !ok {
			return
		}
		if err := p.u.DB.RemoveSubjectImage(p.id, hash); err != nil {
			p.u.showError(err)
			return
		}
		p.reload()
	}, p.u.Win)
}

// reload reads the subject again, keeping unsaved edits of the fields.
func (p *SubjectPage) reload() {
	if s, err := p.u.DB.Subject(p.id); err == nil {
		p.subj.Images = s.Images
		p.refreshImages()
		p.u.Library.Refresh()
	}
}

func (p *SubjectPage) pickFile() {
	id := p.id
	d := dialog.NewFileOpen(func(r fyne.URIReadCloser, err error) {
		if err != nil {
			p.u.showError(err)
			return
		}
		if r == nil {
			return
		}
		path := r.URI().Path()
		r.Close()
		go p.u.ImportAndReport(id, []string{path})
	}, p.u.Win)
	d.Resize(fyne.NewSize(800, 560))
	d.Show()
}

func (p *SubjectPage) confirmDelete() {
	dialog.ShowConfirm("Delete subject", fmt.Sprintf("Delete %s and its %d photos? Runs and gallery images are kept.",
		p.subj.Name, len(p.subj.Images)), func(ok bool) {
		if !ok {
			return
		}
		if err := p.u.DB.DeleteSubject(p.id); err != nil {
			p.u.showError(err)
			return
		}
		p.u.ShowLibrary()
	}, p.u.Win)
}

// refreshRuns rebuilds the subject's run cards, newest first.
func (p *SubjectPage) refreshRuns() {
	runs, err := p.u.DB.Runs(store.RunFilter{SubjectID: p.id, Metrics: true})
	if err != nil {
		p.u.showError(err)
		return
	}
	slices.Reverse(runs)
	p.runs.Objects = nil
	p.cards = map[string]*RunCard{}
	for _, r := range runs {
		c := newRunCard(p.u, r)
		p.cards[r.ID] = c
		p.runs.Add(c.root)
	}
	if len(runs) == 0 {
		p.runs.Add(widget.NewLabel("No runs yet: start with Personalize, or Generate to see what the base model makes."))
	}
	p.runs.Refresh()
}

func (p *SubjectPage) update(up Update) {
	if p.id == "" || up.Run.SubjectID != p.id {
		return
	}
	if c := p.cards[up.Run.ID]; c != nil {
		c.update(up)
		return
	}
	p.refreshRuns()
}
