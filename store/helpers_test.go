package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testOptions keep a locked-file wait short in tests.
var testOptions = &Options{Timeout: 200 * time.Millisecond}

// mustOpen opens a new database in a temporary directory. Its cleanup runs
// the consistency check and closes the database.
func mustOpen(t *testing.T) *DB {
	t.Helper()
	return mustOpenPath(t, filepath.Join(t.TempDir(), FileName))
}

// mustOpenPath opens the database at path, with the same cleanup as
// mustOpen.
func mustOpenPath(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mustCheck(t, db)
		_ = db.Close()
	})
	return db
}

// mustCheck runs Check (bbolt's page check plus the store's invariants) and
// fails the test on any problem. If db has been closed it checks the file
// through a fresh DB.
func mustCheck(t *testing.T, db *DB) {
	t.Helper()
	err := db.Check()
	if errors.Is(err, ErrClosed) {
		db2, err2 := Open(db.Path(), testOptions)
		if err2 != nil {
			t.Errorf("reopen for the consistency check: %v", err2)
			return
		}
		defer db2.Close()
		err = db2.Check()
	}
	if err != nil {
		t.Errorf("consistency check: %v", err)
	}
}

// randBytes returns n pseudo-random bytes from r.
func randBytes(r *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// fakePNG returns a PNG signature followed by n pseudo-random bytes: enough
// for the store, which checks only the signature.
func fakePNG(r *rand.Rand, n int) []byte {
	return append(append([]byte{}, pngSignature...), randBytes(r, n)...)
}

// sha returns the hex SHA-256 of p.
func sha(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

// fileHash returns the hex SHA-256 of a file's contents.
func fileHash(t *testing.T, path string) string {
	t.Helper()
	p, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha(p)
}

// mustSubject stores a subject named name with the given images.
func mustSubject(t *testing.T, db *DB, name string, imgs ...Image) Subject {
	t.Helper()
	s := Subject{Name: name, Class: "dog", Identifier: "sks"}
	if err := db.PutSubject(&s); err != nil {
		t.Fatal(err)
	}
	if len(imgs) > 0 {
		if _, _, err := db.AddSubjectImages(s.ID, imgs); err != nil {
			t.Fatal(err)
		}
	}
	s, err := db.Subject(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mustRun stores a queued run of the given kind.
func mustRun(t *testing.T, db *DB, r Run) Run {
	t.Helper()
	if r.Kind == "" {
		r.Kind = KindPersonalize
	}
	if err := db.PutRun(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// wantErr fails the test unless err matches want (nil means success).
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("error = %v, want %v", err, want)
	}
}
