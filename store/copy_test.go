package store

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// Ensure every value the DB returns is a copy: mutating it changes nothing
// stored, and it stays intact after its transaction, after the file is
// remapped and its pages reused, and after Close.
func TestDB_values_areCopies(t *testing.T) {
	db := mustOpen(t)
	rng := rand.New(rand.NewPCG(11, 12))
	img, png, lora := randBytes(rng, 5000), fakePNG(rng, 5000), randBytes(rng, 5000)

	s := mustSubject(t, db, "Rex", Image{Name: "rex.png", Data: img})
	r := mustRun(t, db, Run{Kind: KindAlign, Config: json.RawMessage(`{"lr":0.001}`)})
	g := GalleryImage{RunID: r.ID, Prompt: "p", Scores: map[string]float64{"clip_t": 0.3}}
	if err := db.AddGalleryImage(&g, png); err != nil {
		t.Fatal(err)
	}
	c := Checkpoint{RunID: r.ID, Kind: CheckpointLoRA}
	if err := db.PutCheckpoint(&c, lora); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendMetric(r.ID, "loss", 0, 1.5); err != nil {
		t.Fatal(err)
	}

	// read returns everything the test holds on to, freshly read.
	type held struct {
		img, png, lora []byte
		subject        Subject
		run            Run
		gallery        GalleryImage
	}
	read := func() held {
		t.Helper()
		var h held
		var err error
		must := func(e error) {
			if e != nil {
				t.Fatal(e)
			}
		}
		h.img, err = db.SubjectImage(s.ID, sha(img))
		must(err)
		h.png, err = db.GalleryImagePNG(g.ID)
		must(err)
		h.lora, err = db.CheckpointTensors(c.ID)
		must(err)
		h.subject, err = db.Subject(s.ID)
		must(err)
		h.run, err = db.Run(r.ID)
		must(err)
		h.gallery, err = db.GalleryImage(g.ID)
		must(err)
		return h
	}
	verify := func(when string, h held) {
		t.Helper()
		if !bytes.Equal(h.img, img) || !bytes.Equal(h.png, png) || !bytes.Equal(h.lora, lora) {
			t.Errorf("%s: blob contents changed", when)
		}
		if h.subject.Images[0].Name != "rex.png" || string(h.run.Config) != `{"lr":0.001}` ||
			h.run.Metrics["loss"][0].Value != 1.5 || h.gallery.Scores["clip_t"] != 0.3 {
			t.Errorf("%s: record contents changed: %+v %+v %+v", when, h.subject, h.run, h.gallery)
		}
	}

	// Mutating what was returned must not reach the database.
	m := read()
	m.img[0] ^= 0xff
	m.png[10] ^= 0xff
	m.lora[0] ^= 0xff
	m.subject.Images[0].Name = "changed"
	m.run.Config[2] = 'X'
	m.run.Metrics["loss"][0].Value = -1
	m.gallery.Scores["clip_t"] = -1
	verify("after mutating returned values", read())

	// Mutating what was passed in after the call must not either.
	in := randBytes(rng, 100)
	if _, _, err := db.AddSubjectImages(s.ID, []Image{{Name: "in", Data: in}}); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(in)
	in[0] ^= 0xff
	if got, _ := db.SubjectImage(s.ID, sha(want)); !bytes.Equal(got, want) {
		t.Error("stored image changed with the caller's slice")
	}

	// Values held across many writes that grow (remap) the file and reuse
	// the pages the old values lived on.
	h := read()
	for i := range 8 {
		big := Checkpoint{RunID: r.ID, Kind: CheckpointLoRA, Step: i + 1}
		if err := db.PutCheckpoint(&big, randBytes(rng, 1<<20)); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteCheckpoint(big.ID); err != nil {
			t.Fatal(err)
		}
	}
	verify("after remapping writes", h)

	// And after Close, when the map is gone.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	verify("after Close", h)
}
