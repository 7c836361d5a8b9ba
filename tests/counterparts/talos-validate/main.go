// Command talos-validate validates every machine config file in a folder with Talos's own
// validation (github.com/siderolabs/talos/pkg/machinery), in metal mode, strict (warnings are
// failures). It prints each failure with its file name and exits 1 if there was any.
//
//	talos-validate DIR
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
)

// metal is the runtime mode of a Talos node installed on a machine (Proxmox VMs included).
type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return true }
func (metal) InContainer() bool     { return false }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: talos-validate DIR")
		os.Exit(2)
	}
	var files []string
	err := filepath.WalkDir(os.Args[1], func(path string, entry os.DirEntry, err error) error {
		if err == nil && !entry.IsDir() && (filepath.Ext(path) == ".yaml" || filepath.Ext(path) == ".yml") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sort.Strings(files)
	failures := 0
	for _, file := range files {
		cfg, err := configloader.NewFromFile(file)
		if err != nil {
			fmt.Printf("%s: load: %v\n", file, err)
			failures++
			continue
		}
		warnings, err := cfg.Validate(metal{}, validation.WithLocal(), validation.WithStrict())
		for _, warning := range warnings {
			fmt.Printf("%s: warning: %s\n", file, warning)
			failures++
		}
		if err != nil {
			fmt.Printf("%s: %v\n", file, err)
			failures++
		}
	}
	fmt.Printf("talos-validate: %d files, %d failures\n", len(files), failures)
	if failures > 0 || len(files) == 0 {
		os.Exit(1)
	}
}
