package store

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Ensure AddGalleryImage stores valid images with their hash and rejects
// invalid ones without writing anything.
func TestDB_AddGalleryImage_validation(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	png := fakePNG(rng, 200)
	for _, tc := range []struct {
		name string
		g    GalleryImage
		png  []byte
		run  bool // set g.RunID to an existing run
		want error
	}{
		{"minimal", GalleryImage{Prompt: "a dog"}, png, false, nil},
		{"full", GalleryImage{
			Prompt: "a sks dog on the beach", NegativePrompt: "blurry", Seed: -42, SubjectID: "s",
			Sampler:     Sampler{Name: "ddim", Steps: 50, Guidance: 7.5, Width: 512, Height: 512},
			BaseModelID: "m", CheckpointID: "c", Scores: map[string]float64{"clip_t": 0.31},
		}, png, true, nil},
		{"not png", GalleryImage{Prompt: "a dog"}, []byte("GIF89a..."), false, ErrInvalid},
		{"no bytes", GalleryImage{Prompt: "a dog"}, nil, false, ErrInvalid},
		{"nan score", GalleryImage{Scores: map[string]float64{"dino": math.NaN()}}, png, false, ErrInvalid},
		{"inf score", GalleryImage{Scores: map[string]float64{"dino": math.Inf(1)}}, png, false, ErrInvalid},
		{"unknown run", GalleryImage{RunID: "nope"}, png, false, ErrNotFound},
		{"id not a uuid", GalleryImage{ID: "img"}, png, false, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t)
			g := tc.g
			if tc.run {
				g.RunID = mustRun(t, db, Run{Kind: KindGenerate}).ID
			}
			err := db.AddGalleryImage(&g, tc.png)
			wantErr(t, err, tc.want)
			all, _ := db.Gallery(GalleryFilter{})
			if err != nil {
				if len(all) != 0 {
					t.Errorf("%d images stored after an error", len(all))
				}
				return
			}
			if len(all) != 1 || all[0].ID != g.ID || all[0].Hash != sha(tc.png) || all[0].Size != len(tc.png) {
				t.Fatalf("stored %+v", all)
			}
			if all[0].Prompt != g.Prompt || all[0].Seed != g.Seed || all[0].Sampler != g.Sampler || len(all[0].Scores) != len(g.Scores) {
				t.Errorf("stored %+v, want %+v", all[0], g)
			}
			got, err := db.GalleryImagePNG(g.ID)
			if err != nil || !bytes.Equal(got, tc.png) {
				t.Errorf("GalleryImagePNG: %d bytes, %v", len(got), err)
			}
		})
	}
}

// Ensure Gallery filters by run and by subject and sorts by time.
func TestDB_Gallery_filter(t *testing.T) {
	db := mustOpen(t)
	rng := rand.New(rand.NewPCG(9, 10))
	r1 := mustRun(t, db, Run{Kind: KindGenerate}).ID
	r2 := mustRun(t, db, Run{Kind: KindGenerate}).ID
	t0 := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	add := func(i int, run, subject string) string {
		g := GalleryImage{RunID: run, SubjectID: subject, Prompt: "p", Created: t0.Add(time.Duration(i) * time.Second)}
		if err := db.AddGalleryImage(&g, fakePNG(rng, 32)); err != nil {
			t.Fatal(err)
		}
		return g.ID
	}
	a := add(3, r1, "s1")
	b := add(1, r1, "s2")
	c := add(2, r2, "s1")
	d := add(0, "", "")
	for _, tc := range []struct {
		name string
		f    GalleryFilter
		want []string
	}{
		{"all", GalleryFilter{}, []string{d, b, c, a}},
		{"run", GalleryFilter{RunID: r1}, []string{b, a}},
		{"subject", GalleryFilter{SubjectID: "s1"}, []string{c, a}},
		{"both", GalleryFilter{RunID: r2, SubjectID: "s1"}, []string{c}},
		{"none", GalleryFilter{SubjectID: "s3"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gs, err := db.Gallery(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, g := range gs {
				ids = append(ids, g.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("images %q, want %q", ids, tc.want)
			}
		})
	}
}

// Ensure SetGalleryScores merges scores and DeleteGalleryImage removes
// record and PNG.
func TestDB_SetGalleryScores_merge(t *testing.T) {
	db := mustOpen(t)
	g := GalleryImage{Prompt: "p", Scores: map[string]float64{"clip_t": 0.2, "dino": 0.5}}
	if err := db.AddGalleryImage(&g, fakePNG(rand.New(rand.NewPCG(1, 1)), 10)); err != nil {
		t.Fatal(err)
	}
	if err := db.SetGalleryScores(g.ID, map[string]float64{"dino": 0.6, "aesthetic": 5.1}); err != nil {
		t.Fatal(err)
	}
	got, _ := db.GalleryImage(g.ID)
	want := map[string]float64{"clip_t": 0.2, "dino": 0.6, "aesthetic": 5.1}
	if len(got.Scores) != len(want) {
		t.Errorf("scores %v, want %v", got.Scores, want)
	}
	for k, v := range want {
		if got.Scores[k] != v {
			t.Errorf("score %s = %v, want %v", k, got.Scores[k], v)
		}
	}
	wantErr(t, db.SetGalleryScores(g.ID, map[string]float64{"x": math.NaN()}), ErrInvalid)
	wantErr(t, db.SetGalleryScores("nope", nil), ErrNotFound)

	if err := db.DeleteGalleryImage(g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GalleryImagePNG(g.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("PNG after delete: %v", err)
	}
	wantErr(t, db.DeleteGalleryImage(g.ID), ErrNotFound)
}
