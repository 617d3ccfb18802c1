package evaluate

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Prompt is an evaluation prompt template: "{}" stands for the subject,
// "identifier class" (e.g. "a {} playing soccer" -> "a sks dog playing
// soccer").
type Prompt struct {
	Template string
	// Category is the prompt's kind: "activity", "recontextualization",
	// "accessorization", "property", or "file".
	Category string
}

// Fill substitutes the subject: identifier and class joined by a space
// (either may be empty), also for the spelled-out placeholders
// "{identifier}" and "{class}".
func (p Prompt) Fill(identifier, class string) string {
	subject := strings.TrimSpace(identifier + " " + class)
	s := strings.ReplaceAll(p.Template, "{identifier}", identifier)
	s = strings.ReplaceAll(s, "{class}", class)
	s = strings.ReplaceAll(s, "{}", subject)
	return strings.Join(strings.Fields(s), " ")
}

// activityGroups is the activity prompt set: four subject groups of two
// classes each, five activity phrases per group, prompts "a {} <phrase>".
//
// The groups and classes are InstructBooth's (Chae et al. 2023, arXiv
// 2312.03011: pets cat/dog, toys teddy bear/monster toy, containers wooden
// pot/cup, vehicles motorbike/bike). The phrase lists are a
// reconstruction: "playing soccer", "riding a bike", "cooking a gourmet
// meal", "floating on the water" and "with popcorn in it" are the paper's
// examples; the rest could not be checked against the paper's appendix
// and should be replaced by its lists where those matter.
var activityGroups = []struct {
	name    string
	classes []string
	phrases []string
}{
	{"pets", []string{"cat", "dog"}, []string{
		"playing soccer", "riding a bike", "cooking a gourmet meal", "reading a book", "playing the guitar"}},
	{"toys", []string{"teddy bear", "monster toy"}, []string{
		"playing soccer", "riding a bike", "cooking a gourmet meal", "surfing on a wave", "playing the drums"}},
	{"containers", []string{"wooden pot", "cup"}, []string{
		"with popcorn in it", "floating on the water", "with flowers in it", "filled with ice cream", "on a table in a cafe"}},
	{"vehicles", []string{"motorbike", "bike"}, []string{
		"floating on the water", "on the surface of the moon", "in a flower garden", "flying in the sky", "covered in graffiti"}},
}

// classAliases maps further class nouns to activity groups.
var classAliases = map[string]string{
	"cats": "pets", "dogs": "pets", "puppy": "pets", "kitten": "pets",
	"toy": "toys", "stuffed animal": "toys", "plushie": "toys", "teddy": "toys", "robot toy": "toys", "duck toy": "toys",
	"pot": "containers", "bowl": "containers", "vase": "containers", "teapot": "containers", "can": "containers", "mug": "containers",
	"motorcycle": "vehicles", "bicycle": "vehicles", "car": "vehicles", "scooter": "vehicles",
}

// ActivityGroup returns the activity group of a class noun ("" if none).
func ActivityGroup(class string) string {
	c := strings.ToLower(strings.TrimSpace(class))
	for _, g := range activityGroups {
		for _, k := range g.classes {
			if k == c {
				return g.name
			}
		}
	}
	return classAliases[c]
}

// ActivityGroups lists the group names.
func ActivityGroups() []string {
	var out []string
	for _, g := range activityGroups {
		out = append(out, g.name)
	}
	return out
}

// ActivityPrompts returns the five activity prompts of group ("pets",
// "toys", "containers", "vehicles").
func ActivityPrompts(group string) ([]Prompt, error) {
	for _, g := range activityGroups {
		if g.name == group {
			out := make([]Prompt, len(g.phrases))
			for i, p := range g.phrases {
				out[i] = Prompt{Template: "a {} " + p, Category: "activity"}
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("no activity group %q (groups: %s)", group, strings.Join(ActivityGroups(), ", "))
}

// DreamBench's 25 prompts per subject (google/dreambooth,
// dataset/prompts_and_classes.txt): objects and live subjects share 10
// recontextualizations and 5 property modifications; objects have 10
// more recontextualizations, live subjects 10 accessorizations/outfits.
var (
	dreamBenchShared = []string{
		"in the jungle", "in the snow", "on the beach", "on a cobblestone street", "on top of pink fabric",
		"on top of a wooden floor", "with a city in the background", "with a mountain in the background",
		"with a blue house in the background", "on top of a purple rug in a forest",
	}
	dreamBenchObject = []string{
		"with a wheat field in the background", "with a tree and autumn leaves in the background",
		"with the Eiffel Tower in the background", "floating on top of water", "floating in an ocean of milk",
		"on top of green grass with sunflowers around it", "on top of a mirror",
		"on top of the sidewalk in a crowded street", "on top of a dirt road", "on top of a white rug",
	}
	dreamBenchLive = []string{
		"wearing a red hat", "wearing a santa hat", "wearing a rainbow scarf", "wearing a black top hat and a monocle",
		"in a chef outfit", "in a firefighter outfit", "in a police outfit", "wearing pink glasses",
		"wearing a yellow shirt", "in a purple wizard outfit",
	}
	dreamBenchProperty = []string{"red", "purple", "shiny", "wet", "cube shaped"}
)

// DreamBenchPrompts returns DreamBench's 25 prompt templates for live
// subjects (cats and dogs) or objects, in the dataset's order.
func DreamBenchPrompts(live bool) []Prompt {
	var out []Prompt
	for _, p := range dreamBenchShared {
		out = append(out, Prompt{"a {} " + p, "recontextualization"})
	}
	if live {
		for _, p := range dreamBenchLive {
			out = append(out, Prompt{"a {} " + p, "accessorization"})
		}
	} else {
		for _, p := range dreamBenchObject {
			out = append(out, Prompt{"a {} " + p, "recontextualization"})
		}
	}
	for _, p := range dreamBenchProperty {
		out = append(out, Prompt{"a " + p + " {}", "property"})
	}
	return out
}

// IsLiveClass reports whether DreamBench treats a class noun as a live
// subject (its live subjects are cats and dogs).
func IsLiveClass(class string) bool {
	switch strings.ToLower(strings.TrimSpace(class)) {
	case "cat", "dog", "cats", "dogs", "puppy", "kitten":
		return true
	}
	return false
}

// ReadPromptFile reads one prompt per line; blank lines and lines
// starting with '#' are skipped. A line with a placeholder ("{}",
// "{identifier}", "{class}") is a template; a line without one is a
// phrase and becomes "a {} <line>".
func ReadPromptFile(path string) ([]Prompt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Prompt
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.Contains(line, "{}") && !strings.Contains(line, "{identifier}") && !strings.Contains(line, "{class}") {
			line = "a {} " + line
		}
		out = append(out, Prompt{Template: line, Category: "file"})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no prompts", path)
	}
	return out, nil
}

// LoadPrompts resolves a prompt-set name for a subject class:
// "activity" (the class's activity group), "activity:GROUP",
// "dreambench" (live or object prompts by class), "dreambench:live",
// "dreambench:object", or else a prompt file.
func LoadPrompts(spec, class string) ([]Prompt, error) {
	name, arg, _ := strings.Cut(spec, ":")
	switch name {
	case "activity":
		g := arg
		if g == "" {
			if g = ActivityGroup(class); g == "" {
				return nil, fmt.Errorf("class %q is in no activity group; use activity:GROUP (%s) or a prompt file",
					class, strings.Join(ActivityGroups(), ", "))
			}
		}
		return ActivityPrompts(g)
	case "dreambench":
		switch arg {
		case "":
			return DreamBenchPrompts(IsLiveClass(class)), nil
		case "live":
			return DreamBenchPrompts(true), nil
		case "object":
			return DreamBenchPrompts(false), nil
		}
		return nil, fmt.Errorf("prompt set %q: want dreambench, dreambench:live or dreambench:object", spec)
	}
	return ReadPromptFile(spec)
}

// sortedKeys is a deterministic listing of a map's keys.
func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
