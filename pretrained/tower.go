package pretrained

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/flextrain/flextrain/model"
)

// towerSearch finds the vision tower of a LLaVA folder: its configuration first (it bounds the weight files),
// then its weights. The CLIP folders that mm_vision_tower leads to are probed once, when first needed.
type towerSearch struct {
	dir        string
	spec       spec
	opts       Options
	configFile string // the file the tower's configuration came from
	weightsDir string // the folder its weights came from
	tried      []string
	clip       *clipFolder
	probed     bool
}

// clipFolder is a CLIP folder found for a tower: where it is, its config file and its tower's configuration.
type clipFolder struct {
	dir, file string
	cfg       model.VisionConfig
}

// config returns the tower's configuration: Options.VisionTower's, the folder's own vision_config, or that
// of the first CLIP folder mm_vision_tower leads to.
func (t *towerSearch) config() (model.VisionConfig, error) {
	if t.opts.VisionTower != "" {
		c, err := readCLIPConfig(t.opts.VisionTower)
		if err != nil {
			return model.VisionConfig{}, fmt.Errorf("pretrained: Options.VisionTower: %w", err)
		}
		t.clip, t.probed, t.configFile = &c, true, c.file
		return c.cfg, nil
	}
	if t.spec.vision != nil {
		t.configFile = t.spec.file
		return *t.spec.vision, nil
	}
	if c := t.candidate(); c != nil {
		t.configFile = c.file
		return c.cfg, nil
	}
	return model.VisionConfig{}, t.notFound("configuration", t.spec.file+" has no vision_config")
}

// weights returns the tower's weights: Options.VisionTower's (the folder's own, own, then listed as ignored),
// the folder's own (read from src), or those of the first CLIP folder mm_vision_tower leads to.
func (t *towerSearch) weights(own sorted, src string) (sorted, error) {
	switch {
	case t.opts.VisionTower != "":
		tw, err := t.readCLIP()
		tw.ignored = append(tw.ignored, own.ignoreAll(t.dir, "replaced by the tower of Options.VisionTower "+t.clip.dir)...)
		return tw, err
	case len(own.tensors) > 0:
		t.weightsDir = t.dir
		return own, nil
	case t.candidate() != nil:
		return t.readCLIP()
	}
	return sorted{}, t.notFound("weights", src+" has no tensor under "+model.VisionPrefix)
}

// readCLIP reads the tower's weights from the CLIP folder found.
func (t *towerSearch) readCLIP() (sorted, error) {
	tw, _, err := readTower(t.clip.dir, t.clip.cfg)
	t.weightsDir = t.clip.dir
	return tw, err
}

// candidate probes, once, the CLIP folders mm_vision_tower leads to, and returns the first that is one.
func (t *towerSearch) candidate() *clipFolder {
	if t.probed {
		return t.clip
	}
	t.probed = true
	name := t.spec.towerName
	if name == "" {
		t.tried = append(t.tried, t.spec.file+" has no mm_vision_tower")
		return nil
	}
	for i, dir := range []string{name, siblingOf(t.dir, name)} {
		c, err := readCLIPConfig(dir)
		if err == nil {
			t.clip = &c
			return t.clip
		}
		t.tried = append(t.tried, fmt.Sprintf("%s (mm_vision_tower %q): %v", []string{"as a path", "its sibling folder"}[i], name, err))
	}
	return nil
}

// siblingOf is the folder beside dir named by the last element of the tower's name.
func siblingOf(dir, name string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	return filepath.Join(filepath.Dir(abs), path.Base(strings.TrimRight(filepath.ToSlash(name), "/")))
}

// notFound is the error for a tower part found nowhere: everything tried, and the way out.
func (t *towerSearch) notFound(what, first string) error {
	t.candidate()
	tried := append([]string{first}, t.tried...)
	return fmt.Errorf("pretrained: %s: no vision tower %s found: %s; name a CLIP folder with Options.VisionTower",
		t.dir, what, strings.Join(tried, "; "))
}

// readCLIPConfig reads the config of the CLIP folder dir.
func readCLIPConfig(dir string) (clipFolder, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return clipFolder{}, fmt.Errorf("%s: not a folder", dir)
	}
	file := filepath.Join(dir, ConfigFile)
	o, err := readObject(file)
	if err != nil {
		return clipFolder{}, err
	}
	s := readSpec(o)
	if err := o.err(); err != nil {
		return clipFolder{}, err
	}
	if s.layout != LayoutCLIP {
		return clipFolder{}, errors.New(file + ": a " + string(s.layout) + " config, not a CLIP one")
	}
	return clipFolder{dir: dir, file: file, cfg: *s.vision}, validateTower(*s.vision, file)
}
