package app

import (
	"fmt"
	"os"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/store"
)

// DefaultIdentifier is the rare token new subjects get (DreamBooth's "sks").
const DefaultIdentifier = "sks"

// LibraryView is the subject library: a searchable grid of subjects with a
// thumbnail of their first image.
type LibraryView struct {
	u      *UI
	root   fyne.CanvasObject
	Search *widget.Entry
	Grid   *widget.GridWrap
	Empty  *widget.Label
	// AddToy adds the toy world (its subject and model) to the library; it
	// shows when a toy model is available and the library lacks either.
	AddToy *widget.Button

	subjects []store.Subject // all, by name
	Shown    []store.Subject // those matching the search, in grid order
	thumbs   *thumbCache
}

func newLibraryView(u *UI) *LibraryView {
	v := &LibraryView{u: u, thumbs: newThumbCache(160)}
	v.Search = widget.NewEntry()
	v.Search.SetPlaceHolder("Search subjects by name, class or description")
	v.Search.OnChanged = func(string) { v.filter() }
	v.Empty = widget.NewLabel("No subjects yet.\n\nDrop a folder of 3–10 photos of one subject (your cat, a plushie, a mug) " +
		"anywhere on this window, or press “Import photos…”. Each subject gets a rare identifier word " +
		"(“sks”) and a class noun (“cat”), so that prompts can say “a photo of sks cat on the beach”.")
	v.Empty.Wrapping = fyne.TextWrapWord
	v.Grid = widget.NewGridWrap(
		func() int { return len(v.Shown) },
		func() fyne.CanvasObject {
			img := newThumb(150)
			name := widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{Bold: true})
			name.Truncation = fyne.TextTruncateEllipsis
			info := widget.NewLabelWithStyle("", fyne.TextAlignCenter, fyne.TextStyle{})
			info.Truncation = fyne.TextTruncateEllipsis
			return container.NewBorder(nil, container.NewVBox(name, info), nil, nil, img)
		},
		func(id widget.GridWrapItemID, o fyne.CanvasObject) {
			if id >= len(v.Shown) {
				return
			}
			s := v.Shown[id]
			c := o.(*fyne.Container)
			img := c.Objects[0].(*canvas.Image)
			texts := c.Objects[1].(*fyne.Container).Objects
			texts[0].(*widget.Label).SetText(s.Name)
			info := fmt.Sprintf("%d images", len(s.Images))
			if s.Class != "" {
				info = s.Identifier + " " + s.Class + " · " + info
			}
			texts[1].(*widget.Label).SetText(info)
			img.Image = nil
			if len(s.Images) > 0 {
				sid, h := s.ID, s.Images[0].Hash
				img.Image = v.thumbs.get(sid+"/"+h, func() ([]byte, error) { return u.DB.SubjectImage(sid, h) },
					func() { v.Grid.RefreshItem(id) })
			}
			img.Refresh()
		},
	)
	v.Grid.OnSelected = func(id widget.GridWrapItemID) {
		v.Grid.UnselectAll()
		if id < len(v.Shown) {
			u.OpenSubject(v.Shown[id].ID)
		}
	}
	newBtn := widget.NewButtonWithIcon("New subject", theme.ContentAddIcon(), v.newSubject)
	importBtn := widget.NewButtonWithIcon("Import photos…", theme.FolderOpenIcon(), func() { v.pickFolder("") })
	importBtn.Importance = widget.HighImportance
	v.AddToy = widget.NewButtonWithIcon("Add toy world demo", theme.MediaFastForwardIcon(), u.OpenToyWorld)
	v.AddToy.Hide()
	top := container.NewBorder(nil, nil, nil, container.NewHBox(v.AddToy, importBtn, newBtn), v.Search)
	hint := widget.NewLabelWithStyle("Drop a folder of photos, or photo files, anywhere on this window to create a subject.",
		fyne.TextAlignLeading, fyne.TextStyle{Italic: true})
	v.root = container.NewBorder(
		container.NewVBox(widget.NewLabelWithStyle("Subjects", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}), top, hint),
		nil, nil, nil, container.NewStack(v.Grid, container.NewCenter(fixedWidth(520, v.Empty))))
	return v
}

// Refresh reloads the subjects from the store.
func (v *LibraryView) Refresh() {
	subs, err := v.u.DB.Subjects()
	if err != nil {
		v.u.showError(err)
		return
	}
	v.subjects = subs
	showIf(v.AddToy, v.u.toyModel() != nil && !v.u.toyInLibrary())
	v.filter()
}

func (v *LibraryView) filter() {
	q := strings.ToLower(strings.TrimSpace(v.Search.Text))
	v.Shown = v.Shown[:0]
	for _, s := range v.subjects {
		hay := strings.ToLower(s.Name + " " + s.Class + " " + s.Identifier + " " + s.Description)
		if q == "" || strings.Contains(hay, q) {
			v.Shown = append(v.Shown, s)
		}
	}
	switch {
	case len(v.subjects) == 0:
		v.Empty.Show()
	case len(v.Shown) == 0:
		v.Empty.SetText(fmt.Sprintf("No subject matches “%s”.", v.Search.Text))
		v.Empty.Show()
	default:
		v.Empty.Hide()
	}
	v.Grid.Refresh()
}

func (v *LibraryView) newSubject() {
	name := widget.NewEntry()
	name.SetPlaceHolder("e.g. Rex")
	class := widget.NewEntry()
	class.SetPlaceHolder("e.g. dog")
	dialog.ShowForm("New subject", "Create", "Cancel", []*widget.FormItem{
		widget.NewFormItem("Name", name),
		{Text: "Class noun", Widget: class, HintText: "what the subject is: dog, cat, toy, person, mug…"},
	}, func(ok bool) {
		if !ok {
			return
		}
		s := store.Subject{Name: strings.TrimSpace(name.Text), Class: strings.TrimSpace(class.Text), Identifier: DefaultIdentifier}
		if s.Name == "" {
			s.Name = "New subject"
		}
		if err := v.u.DB.PutSubject(&s); err != nil {
			v.u.showError(err)
			return
		}
		v.u.OpenSubject(s.ID)
	}, v.u.Win)
}

// pickFolder lets the user choose a folder of photos to import into the
// subject (a new one when subjectID is "").
func (v *LibraryView) pickFolder(subjectID string) {
	d := dialog.NewFolderOpen(func(uri fyne.ListableURI, err error) {
		if err != nil {
			v.u.showError(err)
			return
		}
		if uri == nil {
			return
		}
		go v.u.ImportAndReport(subjectID, []string{uri.Path()})
	}, v.u.Win)
	d.Resize(fyne.NewSize(800, 560))
	d.Show()
}

// ImportOutcome is the result of importing files into a subject.
type ImportOutcome struct {
	Subject    store.Subject // the subject, after the import
	Created    bool          // the import created it
	Added      int
	Duplicates int
	Bad        []BadFile
}

// Drop handles files and folders dropped on the window: on a subject's
// page (Library tab) they extend that subject, elsewhere they create a new
// subject named after the folder. The import runs in the background and ends with a
// dialog listing what was imported and every file that was not.
func (u *UI) Drop(uris []fyne.URI) {
	var paths []string
	for _, uri := range uris {
		if uri.Scheme() == "file" {
			paths = append(paths, uri.Path())
		}
	}
	if len(paths) == 0 {
		return
	}
	target := ""
	if sel := u.Tabs.Selected(); sel != nil && sel.Text == "Library" {
		target = u.Subject.id // the subject page is open in the Library tab
	}
	go u.ImportAndReport(target, paths)
}

// ImportAndReport imports paths into the subject (a new one named after
// the files when subjectID is "") and shows the outcome in a dialog. Call
// it from a background goroutine: it reads and decodes every file before
// it returns.
func (u *UI) ImportAndReport(subjectID string, paths []string) (ImportOutcome, error) {
	fyne.Do(func() { u.statusBar.SetText(fmt.Sprintf("Importing %d item(s)…", len(paths))) })
	out, err := u.Import(subjectID, paths)
	fyne.DoAndWait(func() {
		u.updateStatusBar()
		if err != nil {
			u.showError(err)
			return
		}
		u.Library.Refresh()
		if out.Subject.ID != "" && (out.Created || u.Subject.id == out.Subject.ID) {
			u.OpenSubject(out.Subject.ID)
		}
		u.showImportReport(out)
	})
	return out, err
}

// Import reads and decodes the files (ImportFiles) and adds the good ones
// to the subject, creating it when subjectID is "" and at least one image
// is good. Bad files are reported, never fatal.
func (u *UI) Import(subjectID string, paths []string) (ImportOutcome, error) {
	res := ImportFiles(paths)
	out := ImportOutcome{Bad: res.Bad}
	if len(res.Images) == 0 {
		if subjectID != "" {
			out.Subject, _ = u.DB.Subject(subjectID)
		}
		return out, nil
	}
	if subjectID == "" {
		s := store.Subject{Name: SubjectNameFor(paths), Identifier: DefaultIdentifier}
		if err := u.DB.PutSubject(&s); err != nil {
			return out, err
		}
		subjectID, out.Created = s.ID, true
	}
	added, dup, err := u.DB.AddSubjectImages(subjectID, res.Images)
	if err != nil {
		return out, err
	}
	out.Added, out.Duplicates = added, dup
	out.Subject, err = u.DB.Subject(subjectID)
	return out, err
}

// importSummary is the report dialog's text.
func importSummary(out ImportOutcome) string {
	var b strings.Builder
	switch {
	case out.Added == 0 && out.Duplicates == 0:
		b.WriteString("No image could be imported.")
	case out.Created:
		fmt.Fprintf(&b, "Created subject “%s” with %d image(s).", out.Subject.Name, out.Added)
	default:
		fmt.Fprintf(&b, "Added %d image(s) to “%s”.", out.Added, out.Subject.Name)
	}
	if out.Duplicates > 0 {
		fmt.Fprintf(&b, " %d image(s) were already there and were skipped.", out.Duplicates)
	}
	if out.Created && out.Subject.Class == "" {
		b.WriteString("\nSet its class noun (dog, cat, toy…) on the subject's page before personalizing.")
	}
	if len(out.Bad) > 0 {
		fmt.Fprintf(&b, "\n\n%d file(s) could not be used:", len(out.Bad))
	}
	return b.String()
}

func (u *UI) showImportReport(out ImportOutcome) {
	msg := widget.NewLabel(importSummary(out))
	msg.Wrapping = fyne.TextWrapWord
	content := container.NewVBox(msg)
	if len(out.Bad) > 0 {
		rows := container.NewVBox()
		for _, b := range out.Bad {
			name := b.Path
			if home, err := os.UserHomeDir(); err == nil && strings.HasPrefix(name, home) {
				name = "~" + strings.TrimPrefix(name, home)
			}
			l := widget.NewLabel("• " + name + ": " + b.Reason)
			l.Wrapping = fyne.TextWrapWord
			rows.Add(l)
		}
		scroll := container.NewVScroll(rows)
		scroll.SetMinSize(fyne.NewSize(520, min(float32(len(out.Bad))*40, 240)))
		content.Add(scroll)
	}
	title := "Import finished"
	if len(out.Bad) > 0 {
		title = "Import finished with problems"
	}
	d := dialog.NewCustom(title, "OK", fixedWidth(560, content), u.Win)
	d.Show()
}
