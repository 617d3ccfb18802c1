package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a writer child; these
// variables tell the child what to do.
const (
	envCrashDB   = "STORE_CRASH_DB"   // database path
	envCrashLog  = "STORE_CRASH_LOG"  // side file of committed ids
	envCrashSeed = "STORE_CRASH_SEED" // the child's random seed
)

func TestMain(m *testing.M) {
	if path := os.Getenv(envCrashDB); path != "" {
		seed, _ := strconv.ParseUint(os.Getenv(envCrashSeed), 10, 64)
		if err := crashChild(path, os.Getenv(envCrashLog), seed); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild writes subjects, gallery images, checkpoints and metrics in a
// loop until it is killed (or 10 s pass). After each committed transaction
// it appends a line to logPath and fsyncs it:
//
//	run <id>                       a run set running
//	subject <id> <hash>,<hash>...  a subject and its images
//	gallery <id> <hash>            a gallery image
//	checkpoint <id> <hash>         a LoRA checkpoint
//	?checkpoint <id>               about to delete (written before the delete)
//	-checkpoint <id>               deleted
//	metric <run id> <step>         a loss point and the progress at step
func crashChild(path, logPath string, seed uint64) error {
	db, err := Open(path, &Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	record := func(format string, args ...any) error {
		if _, err := fmt.Fprintf(logf, format+"\n", args...); err != nil {
			return err
		}
		return logf.Sync()
	}

	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	run := Run{Kind: KindPersonalize, Status: StatusRunning}
	if err := db.PutRun(&run); err != nil {
		return err
	}
	if err := record("run %s", run.ID); err != nil {
		return err
	}
	var checkpoints []string
	for i, deadline := 0, time.Now().Add(10*time.Second); time.Now().Before(deadline); i++ {
		switch i % 4 {
		case 0:
			s := Subject{Name: fmt.Sprintf("subject %d", i)}
			if err := db.PutSubject(&s); err != nil {
				return err
			}
			var imgs []Image
			var hashes []string
			for j := range 1 + rng.IntN(3) {
				data := randBytes(rng, 1+rng.IntN(16<<10))
				imgs = append(imgs, Image{Name: fmt.Sprintf("%d.png", j), Data: data})
				hashes = append(hashes, sha(data))
			}
			if _, _, err := db.AddSubjectImages(s.ID, imgs); err != nil {
				return err
			}
			err = record("subject %s %s", s.ID, strings.Join(hashes, ","))
		case 1:
			png := fakePNG(rng, rng.IntN(32<<10))
			g := GalleryImage{RunID: run.ID, Prompt: "a photo of sks dog", Seed: rng.Int64()}
			if err := db.AddGalleryImage(&g, png); err != nil {
				return err
			}
			err = record("gallery %s %s", g.ID, sha(png))
		case 2:
			if len(checkpoints) > 2 && rng.IntN(2) == 0 {
				id := checkpoints[0]
				checkpoints = checkpoints[1:]
				if err := record("?checkpoint %s", id); err != nil {
					return err
				}
				if err := db.DeleteCheckpoint(id); err != nil {
					return err
				}
				err = record("-checkpoint %s", id)
				break
			}
			tensors := randBytes(rng, 4<<10+rng.IntN(60<<10))
			c := Checkpoint{RunID: run.ID, Kind: CheckpointLoRA, Step: i}
			if err := db.PutCheckpoint(&c, tensors); err != nil {
				return err
			}
			checkpoints = append(checkpoints, c.ID)
			err = record("checkpoint %s %s", c.ID, sha(tensors))
		case 3:
			if err := db.AppendMetrics(run.ID, i, map[string]float64{"loss": rng.Float64()}); err != nil {
				return err
			}
			if err := db.UpdateRunProgress(run.ID, i, 1<<20); err != nil {
				return err
			}
			err = record("metric %s %d", run.ID, i)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Ensure a writer killed with SIGKILL at random moments never leaves the
// database inconsistent or loses a transaction it saw commit, and that
// the run it left running is marked interrupted at the next Open.
func TestDB_update_survivesSIGKILL(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("IB_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (IB_SEED=%d replays the delays)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0xc4a5))
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	dir := t.TempDir()
	path, logPath := filepath.Join(dir, FileName), filepath.Join(dir, "committed.log")
	var committed int
	for round := range rounds {
		delay := time.Duration(10+rng.IntN(290)) * time.Millisecond
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			envCrashDB+"="+path, envCrashLog+"="+logPath,
			envCrashSeed+"="+strconv.FormatUint(rng.Uint64(), 10))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		_ = cmd.Process.Kill() // SIGKILL on Unix
		if err := cmd.Wait(); err == nil || stderr.Len() > 0 {
			t.Fatalf("round %d: child ended by itself (%v): %s", round, err, stderr.String())
		}

		db, err := Open(path, testOptions)
		if err != nil {
			t.Fatalf("round %d (killed after %v): open: %v", round, delay, err)
		}
		if err := db.Check(); err != nil {
			t.Errorf("round %d (killed after %v): %v", round, delay, err)
		}
		committed = verifyCommitted(t, db, logPath)
		db.Close()
		if t.Failed() {
			t.Fatalf("round %d failed (killed after %v)", round, delay)
		}
	}
	t.Logf("%d rounds, %d committed transactions verified", rounds, committed)
}

// verifyCommitted replays the child's side file and checks that the
// database holds everything it records. It returns the number of lines.
func verifyCommitted(t *testing.T, db *DB, logPath string) int {
	t.Helper()
	data, err := os.ReadFile(logPath)
	if errors.Is(err, os.ErrNotExist) {
		return 0 // every child so far was killed before its first commit
	} else if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1] // a line cut by the kill is not a commit
	} else {
		data = nil
	}
	var (
		runs      []string
		subjects  = map[string][]string{}
		gallery   = map[string]string{}
		present   = map[string]string{} // checkpoint -> hash
		deleted   = map[string]bool{}
		lastStep  = map[string]int{}
		lineCount int
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lineCount++
		f := strings.Fields(sc.Text())
		switch f[0] {
		case "run":
			runs = append(runs, f[1])
		case "subject":
			subjects[f[1]] = strings.Split(f[2], ",")
		case "gallery":
			gallery[f[1]] = f[2]
		case "checkpoint":
			present[f[1]] = f[2]
		case "?checkpoint":
			delete(present, f[1])
		case "-checkpoint":
			deleted[f[1]] = true
		case "metric":
			lastStep[f[1]], _ = strconv.Atoi(f[2])
		default:
			t.Fatalf("bad side-file line %q", sc.Text())
		}
	}

	for _, id := range runs {
		r, err := db.Run(id)
		if err != nil {
			t.Errorf("run %s: %v", id, err)
			continue
		}
		if r.Status != StatusInterrupted {
			t.Errorf("run %s: status %q after the crash, want interrupted", id, r.Status)
		}
		if step, ok := lastStep[id]; ok {
			pts := r.Metrics["loss"]
			if r.Progress.Step < step || !slices.ContainsFunc(pts, func(p Point) bool { return p.Step == step }) {
				t.Errorf("run %s: committed step %d missing (progress %d, %d points)", id, step, r.Progress.Step, len(pts))
			}
		}
	}
	for id, hashes := range subjects {
		s, err := db.Subject(id)
		if err != nil {
			t.Errorf("subject %s: %v", id, err)
			continue
		}
		var stored []string
		for _, ref := range s.Images {
			stored = append(stored, ref.Hash)
		}
		if !slices.Equal(stored, hashes) {
			t.Errorf("subject %s: images %q, committed %q", id, stored, hashes)
		}
		for _, h := range hashes {
			if p, err := db.SubjectImage(id, h); err != nil || sha(p) != h {
				t.Errorf("subject %s image %s: %v", id, h, err)
			}
		}
	}
	for id, h := range gallery {
		if p, err := db.GalleryImagePNG(id); err != nil || sha(p) != h {
			t.Errorf("gallery image %s: %v", id, err)
		}
	}
	for id, h := range present {
		if p, err := db.CheckpointTensors(id); err != nil || sha(p) != h {
			t.Errorf("checkpoint %s: %v", id, err)
		}
	}
	for id := range deleted {
		if _, err := db.Checkpoint(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted checkpoint %s: %v", id, err)
		}
	}
	return lineCount
}
