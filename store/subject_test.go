package store

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
)

// Ensure PutSubject accepts valid subjects and rejects invalid ones without
// writing anything.
func TestDB_PutSubject_validation(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Subject
		want error
	}{
		{"minimal", Subject{Name: "Rex"}, nil},
		{"full", Subject{Name: "Rex", Class: "dog", Identifier: "sks", Description: "a corgi"}, nil},
		{"chosen id", Subject{ID: "0b6e9f5e-3f0c-4a57-9d1f-6b7a2d7c8e11", Name: "Rex"}, nil},
		{"no name", Subject{Class: "dog"}, ErrInvalid},
		{"blank name", Subject{Name: "  "}, ErrInvalid},
		{"id not a uuid", Subject{ID: "rex", Name: "Rex"}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t)
			err := db.PutSubject(&tc.s)
			wantErr(t, err, tc.want)
			all, _ := db.Subjects()
			if want := map[bool]int{true: 1, false: 0}[tc.want == nil]; len(all) != want {
				t.Errorf("%d subjects stored, want %d", len(all), want)
			}
		})
	}
}

// Ensure an update keeps the stored images and creation time and ignores
// the caller's Images.
func TestDB_PutSubject_updateKeepsImages(t *testing.T) {
	db := mustOpen(t)
	s := mustSubject(t, db, "Rex", Image{Name: "a.png", Data: []byte("a")})
	if s.ID == "" || s.Created.IsZero() || len(s.Images) != 1 {
		t.Fatalf("stored subject %+v", s)
	}
	upd := Subject{ID: s.ID, Name: "Rex II", Class: "corgi", Images: []ImageRef{{Name: "bogus"}}}
	if err := db.PutSubject(&upd); err != nil {
		t.Fatal(err)
	}
	if !upd.Created.Equal(s.Created) || len(upd.Images) != 1 || upd.Images[0].Name != "a.png" {
		t.Errorf("written back %+v", upd)
	}
	got, err := db.Subject(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Rex II" || got.Class != "corgi" || len(got.Images) != 1 || !got.Created.Equal(s.Created) {
		t.Errorf("after update %+v", got)
	}
}

// Ensure Subjects sorts by name ignoring case, then by creation time.
func TestDB_Subjects_sorted(t *testing.T) {
	db := mustOpen(t)
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, name := range []string{"bella", "Max", "Bella", "alfie"} {
		s := Subject{Name: name, Created: t0.Add(time.Duration(-i) * time.Hour)}
		if err := db.PutSubject(&s); err != nil {
			t.Fatal(err)
		}
	}
	all, err := db.Subjects()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	// "Bella" was created an hour before "bella".
	if want := []string{"alfie", "Bella", "bella", "Max"}; !slices.Equal(names, want) {
		t.Errorf("order %q, want %q", names, want)
	}
}

// Ensure AddSubjectImages dedupes by content hash, within a call and
// against stored images, and fails atomically on a bad image.
func TestDB_AddSubjectImages_dedupe(t *testing.T) {
	a, b, c := []byte("image a"), []byte("image b"), []byte("image c")
	for _, tc := range []struct {
		name             string
		first, second    []Image
		added, dups      int // of the second call
		want             error
		wantStoredHashes []string
	}{
		{"distinct", []Image{{"a", a}}, []Image{{"b", b}, {"c", c}}, 2, 0, nil, []string{sha(a), sha(b), sha(c)}},
		{"dup of stored", []Image{{"a", a}}, []Image{{"a again", a}, {"b", b}}, 1, 1, nil, []string{sha(a), sha(b)}},
		{"dup in call", nil, []Image{{"b", b}, {"b2", b}, {"b3", b}}, 1, 2, nil, []string{sha(b)}},
		{"empty image", []Image{{"a", a}}, []Image{{"b", b}, {"empty", nil}}, 0, 0, ErrInvalid, []string{sha(a)}},
		{"no images", []Image{{"a", a}}, nil, 0, 0, nil, []string{sha(a)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t)
			s := mustSubject(t, db, "Rex", tc.first...)
			added, dups, err := db.AddSubjectImages(s.ID, tc.second)
			wantErr(t, err, tc.want)
			if added != tc.added || dups != tc.dups {
				t.Errorf("added, duplicates = %d, %d; want %d, %d", added, dups, tc.added, tc.dups)
			}
			got, err := db.Subject(s.ID)
			if err != nil {
				t.Fatal(err)
			}
			var hashes []string
			for _, ref := range got.Images {
				hashes = append(hashes, ref.Hash)
			}
			if !slices.Equal(hashes, tc.wantStoredHashes) {
				t.Errorf("stored %d images %q, want %q", len(hashes), hashes, tc.wantStoredHashes)
			}
		})
	}
}

// Ensure adding images to a missing subject fails with ErrNotFound.
func TestDB_AddSubjectImages_unknownSubject(t *testing.T) {
	db := mustOpen(t)
	_, _, err := db.AddSubjectImages("0b6e9f5e-3f0c-4a57-9d1f-6b7a2d7c8e11", []Image{{"a", []byte("a")}})
	wantErr(t, err, ErrNotFound)
}

// Ensure SubjectImage returns the stored bytes by hash and ErrNotFound for
// unknown subjects and hashes.
func TestDB_SubjectImage_lookup(t *testing.T) {
	db := mustOpen(t)
	data := []byte("\x89PNG pixels")
	s := mustSubject(t, db, "Rex", Image{Name: "rex.png", Data: data})
	other := mustSubject(t, db, "Max")
	for _, tc := range []struct {
		name, subject, hash string
		want                error
	}{
		{"found", s.ID, sha(data), nil},
		{"unknown hash", s.ID, sha([]byte("x")), ErrNotFound},
		{"other subject", other.ID, sha(data), ErrNotFound},
		{"unknown subject", "nobody", sha(data), ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.SubjectImage(tc.subject, tc.hash)
			wantErr(t, err, tc.want)
			if tc.want == nil && !bytes.Equal(got, data) {
				t.Errorf("got %q, want %q", got, data)
			}
		})
	}
}

// Ensure DeleteSubject removes the record and every image, leaving other
// subjects alone.
func TestDB_DeleteSubject_removesImages(t *testing.T) {
	db := mustOpen(t)
	s := mustSubject(t, db, "Rex", Image{"a", []byte("a")}, Image{"b", []byte("b")})
	keep := mustSubject(t, db, "Max", Image{"a", []byte("a")})
	if err := db.DeleteSubject(s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Subject(s.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Subject after delete: %v", err)
	}
	if _, err := db.SubjectImage(s.ID, sha([]byte("a"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("SubjectImage after delete: %v", err)
	}
	if _, err := db.SubjectImage(keep.ID, sha([]byte("a"))); err != nil {
		t.Errorf("other subject's image: %v", err)
	}
	wantErr(t, db.DeleteSubject(s.ID), ErrNotFound)
}

// Ensure RemoveSubjectImage removes one image, record and bytes.
func TestDB_RemoveSubjectImage_one(t *testing.T) {
	db := mustOpen(t)
	s := mustSubject(t, db, "Rex", Image{"a", []byte("a")}, Image{"b", []byte("b")})
	if err := db.RemoveSubjectImage(s.ID, sha([]byte("a"))); err != nil {
		t.Fatal(err)
	}
	got, _ := db.Subject(s.ID)
	if len(got.Images) != 1 || got.Images[0].Name != "b" {
		t.Errorf("images after remove: %+v", got.Images)
	}
	if _, err := db.SubjectImage(s.ID, sha([]byte("a"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("bytes after remove: %v", err)
	}
	wantErr(t, db.RemoveSubjectImage(s.ID, sha([]byte("a"))), ErrNotFound)
}
