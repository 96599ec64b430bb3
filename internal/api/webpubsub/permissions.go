package webpubsub

import (
	"net/http"

	"github.com/switchboardhq/switchboard/internal/core"
)

// This file holds Grant, Revoke and CheckPermission.

// permissionArgs validates the {perm} path variable and the targetName
// parameter ("" = every group). required makes an absent targetName a 400,
// as RevokePermission does on the service.
func (c *call) permissionArgs(required bool) (core.Permission, string, error) {
	perm, ok := core.ParsePermission(c.params.perm)
	if !ok {
		return 0, "", errInvalidPermission(c.params.perm)
	}
	target := c.get("targetName")
	if target == "" && !required {
		return perm, "", nil
	}
	if !core.ValidGroupName(target) {
		return 0, "", errInvalidGroup("targetName")
	}
	return perm, target, nil
}

func (h *handler) grantPermission(c *call) error {
	perm, target, err := c.permissionArgs(false)
	if err != nil {
		return err
	}
	conn, err := c.hub.Conn(c.params.conn)
	if err != nil {
		return errPermissionConnNotFound(c.params.conn)
	}
	conn.Grant(perm, target)
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handler) revokePermission(c *call) error {
	perm, target, err := c.permissionArgs(true)
	if err != nil {
		return err
	}
	if conn, err := c.hub.Conn(c.params.conn); err == nil {
		conn.Revoke(perm, target)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) checkPermission(c *call) error {
	perm, target, err := c.permissionArgs(false)
	if err != nil {
		return err
	}
	conn, err := c.hub.Conn(c.params.conn)
	if err != nil {
		writeWarning(c.w, warnConnNotExisted)
		return nil
	}
	return exists(c, conn.Can(perm, target), warnPermNotExisted)
}
