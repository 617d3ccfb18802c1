package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Ensure a new file gets every bucket of the current schema.
func TestOpen_newFile_currentSchema(t *testing.T) {
	db := mustOpen(t)
	err := db.bolt.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				t.Errorf("bucket %q missing", name)
			}
		}
		if v := string(tx.Bucket(bucketMeta).Get(keySchema)); v != strconv.Itoa(SchemaVersion) {
			t.Errorf("schema = %q, want %d", v, SchemaVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Ensure Open creates missing parent directories.
func TestOpen_missingDir_created(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", FileName)
	mustOpenPath(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// Ensure a second instance fails fast with ErrLocked naming the file, and
// can open once the first has closed.
func TestOpen_secondInstance_ErrLocked(t *testing.T) {
	db := mustOpen(t)
	start := time.Now()
	db2, err := Open(db.Path(), &Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		db2.Close()
		t.Fatal("second Open succeeded while the first holds the file")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("error = %v, want ErrLocked", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "already open by another InstructBooth") || !strings.Contains(msg, db.Path()) {
		t.Errorf("message %q does not explain the lock and name the file", msg)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("second Open took %v with a 100ms timeout", d)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db3, err := Open(db.Path(), testOptions)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db3.Close()
}

// Ensure files that are not InstructBooth databases are refused untouched.
func TestOpen_foreignFile_refused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, path string)
		want  error
	}{
		{"foreign bbolt", func(t *testing.T, path string) {
			bdb, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer bdb.Close()
			if err := bdb.Update(func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket([]byte("somebody-else"))
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}, ErrNotStore},
		{"not bbolt", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("not a database\n", 1000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			tc.setup(t, path)
			before := fileHash(t, path)
			db, err := Open(path, testOptions)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if fileHash(t, path) != before {
				t.Error("Open modified the file")
			}
		})
	}
}

// Ensure every method returns ErrClosed after Close.
func TestDB_Close_methodsReturnErrClosed(t *testing.T) {
	db := mustOpen(t)
	s := mustSubject(t, db, "Rex")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for name, call := range map[string]func() error{
		"Subject":    func() error { _, err := db.Subject(s.ID); return err },
		"Subjects":   func() error { _, err := db.Subjects(); return err },
		"PutSubject": func() error { return db.PutSubject(&Subject{Name: "x"}) },
		"PutRun":     func() error { return db.PutRun(&Run{Kind: KindGenerate}) },
		"Runs":       func() error { _, err := db.Runs(RunFilter{}); return err },
		"Gallery":    func() error { _, err := db.Gallery(GalleryFilter{}); return err },
		"Ratings":    func() error { _, err := db.Ratings(); return err },
		"Check":      db.Check,
	} {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// Ensure data written before Close is there after reopening.
func TestDB_Close_reopenPersists(t *testing.T) {
	db := mustOpen(t)
	s := mustSubject(t, db, "Rex", Image{Name: "a.png", Data: []byte("aaa")})
	db.Close()
	db = mustOpenPath(t, db.Path())
	got, err := db.Subject(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Rex" || len(got.Images) != 1 || !got.Created.Equal(s.Created) {
		t.Errorf("after reopen: %+v, want %+v", got, s)
	}
}

// Ensure DefaultPath follows INSTRUCTBOOTH_DATA and the platform convention.
func TestDefaultPath_env(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, data, xdg, want string
		goos                  string // "" for every platform
	}{
		{name: "override", data: dir, want: filepath.Join(dir, FileName)},
		{name: "xdg", xdg: dir, want: filepath.Join(dir, "InstructBooth", FileName), goos: "linux"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.goos != "" && tc.goos != runtime.GOOS {
				t.Skip("platform convention of", tc.goos)
			}
			t.Setenv("INSTRUCTBOOTH_DATA", tc.data)
			t.Setenv("XDG_DATA_HOME", tc.xdg)
			got, err := DefaultPath()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("DefaultPath() = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("home", func(t *testing.T) {
		t.Setenv("INSTRUCTBOOTH_DATA", "")
		t.Setenv("XDG_DATA_HOME", "")
		got, err := DefaultPath()
		if err != nil {
			t.Skip("no home directory:", err)
		}
		if !filepath.IsAbs(got) || !strings.HasSuffix(got, filepath.Join("InstructBooth", FileName)) {
			t.Errorf("DefaultPath() = %q", got)
		}
	})
}

// Ensure concurrent writers and readers on one DB neither fail nor lose
// writes (run with -race).
func TestDB_concurrent_writersAndReaders(t *testing.T) {
	db := mustOpen(t)
	const writers, points = 4, 10
	var runs [writers]string
	for i := range runs {
		runs[i] = mustRun(t, db, Run{Kind: KindAlign}).ID
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	for w := range writers {
		wg.Go(func() {
			for s := range points {
				if err := db.AppendMetric(runs[w], "reward", s, float64(s)); err != nil {
					errs <- err
					return
				}
				if err := db.PutSubject(&Subject{Name: fmt.Sprintf("w%d-%d", w, s)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range points {
				if _, err := db.Runs(RunFilter{Metrics: true}); err != nil {
					errs <- err
					return
				}
				if _, err := db.Subjects(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range runs {
		if pts, _ := db.Metric(id, "reward"); len(pts) != points {
			t.Errorf("run %s: %d points, want %d", id, len(pts), points)
		}
	}
	if all, _ := db.Subjects(); len(all) != writers*points {
		t.Errorf("%d subjects, want %d", len(all), writers*points)
	}
}
