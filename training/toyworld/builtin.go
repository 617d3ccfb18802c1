package toyworld

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// builtinFS is the trained toy base model (a diffusers folder without its
// train/ state), shipped inside the binary. base/TRAINING.md says how it
// was trained.
//
//go:embed base
var builtinFS embed.FS

// BuiltinFiles lists the built-in model's files (slash paths relative to
// the model folder), sorted.
func BuiltinFiles() []string {
	var out []string
	fs.WalkDir(builtinFS, "base", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p[len("base/"):])
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// BuiltinModel returns the folder of the built-in toy base model, writing
// it from the binary into cacheDir/toyworld-<hash> on first use (cacheDir
// "" means the user's cache folder, os.UserCacheDir()/instructbooth). The
// folder name carries a hash of the contents, so a binary with another
// model never uses a stale copy; a partly written copy is replaced.
func BuiltinModel(cacheDir string) (string, error) {
	if cacheDir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			c = os.TempDir()
		}
		cacheDir = filepath.Join(c, "instructbooth")
	}
	if _, err := builtinFS.ReadFile("base/model_index.json"); err != nil {
		return "", fmt.Errorf("toyworld: this build has no built-in model (training/toyworld/base holds no model_index.json); train one with scripts/train-toyworld.sh")
	}
	h := sha256.New()
	files := BuiltinFiles()
	for _, f := range files {
		b, err := builtinFS.ReadFile(path.Join("base", f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	dir := filepath.Join(cacheDir, "toyworld-"+hex.EncodeToString(h.Sum(nil))[:12])
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("toyworld: built-in model: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, ".toyworld-*")
	if err != nil {
		return "", fmt.Errorf("toyworld: built-in model: %w", err)
	}
	for _, f := range files {
		b, _ := builtinFS.ReadFile(path.Join("base", f))
		p := filepath.Join(tmp, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("toyworld: writing the built-in model: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(done); serr == nil {
			return dir, nil // another process won the race
		}
		return "", fmt.Errorf("toyworld: built-in model: %w", err)
	}
	return dir, nil
}
