//go:build !linux

package atomicfile

// renameNoReplace renames oldpath to newpath unless newpath exists; it is
// exact unless another process creates newpath in between.
func renameNoReplace(oldpath, newpath string) error {
	return renameIfAbsent(oldpath, newpath)
}
