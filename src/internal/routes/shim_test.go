package routes

import "qmail-remote-go/src/internal/ctlcdb"

// The cdb machinery moved to package ctlcdb; these are its parts under
// the names the tests of this package knew them by.

type stamp = ctlcdb.Stamp

var stampOf = ctlcdb.StampOf

func encodeDB(t *Table, synErr *SyntaxError, st stamp) ([]byte, error) {
	return compiled.EncodeDB(t.routes, synErr, st)
}

type db struct{ d *ctlcdb.DB[Route] }

func openDB(b []byte) (*db, error) {
	d, err := compiled.OpenDB(b)
	if err != nil {
		return nil, err
	}
	return &db{d}, nil
}

func (d *db) lookup(host string) (Route, error) {
	m, err := d.d.Lookup(host)
	if err != nil || !m.Found {
		return NoRoute, err
	}
	return m.Value, nil
}

func (d *db) stamp() (stamp, error)              { return d.d.Stamp() }
func (d *db) syntaxError() (*SyntaxError, error) { return d.d.SyntaxError() }
