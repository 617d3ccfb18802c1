package dreambooth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
)

// BaseModelHash identifies the checkpoint a pipeline was loaded from: for
// a single file the hex SHA-256 of the file (lora.ModelHash, what the
// store records for a base model); for a diffusers folder the SHA-256 of
// the lines "<path relative to the folder> <file SHA-256>\n" of the weight
// files read, in name order. It reads every weight file once.
func BaseModelHash(src sd.Source) (string, error) {
	if len(src.Files) == 0 {
		return "", fmt.Errorf("dreambooth: the pipeline records no weight files")
	}
	if src.Layout == sd.LayoutSingleFile && len(src.Files) == 1 {
		return lora.ModelHash(src.Files[0])
	}
	files := append([]string(nil), src.Files...)
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		fh, err := lora.ModelHash(f)
		if err != nil {
			return "", err
		}
		rel, err := filepath.Rel(src.Path, f)
		if err != nil {
			rel = filepath.Base(f)
		}
		fmt.Fprintf(h, "%s %s\n", filepath.ToSlash(rel), fh)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
