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
	perm, ok := core.ParsePermission(c.params.Perm)
	if !ok {
		return 0, "", errInvalidPermission(c.params.Perm)
	}
	target := c.query.Get("targetName")
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
	r, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqGrant, Conn: c.params.Conn, Perm: perm, Group: target})
	if err != nil {
		return fromCore(err, c.params.Conn)
	}
	if r.Err != nil {
		return errPermissionConnNotFound(c.params.Conn)
	}
	c.w.WriteHeader(http.StatusOK)
	return nil
}

func (h *handler) revokePermission(c *call) error {
	perm, target, err := c.permissionArgs(true)
	if err != nil {
		return err
	}
	if _, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqRevoke, Conn: c.params.Conn, Perm: perm, Group: target}); err != nil {
		return fromCore(err, c.params.Conn)
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) checkPermission(c *call) error {
	perm, target, err := c.permissionArgs(false)
	if err != nil {
		return err
	}
	r, err := c.hub.Do(c.r.Context(), core.Request{Kind: core.ReqCheck, Conn: c.params.Conn, Perm: perm, Group: target})
	if err != nil {
		return fromCore(err, c.params.Conn)
	}
	if r.Err != nil {
		writeWarning(c.w, warnConnNotExisted)
		return nil
	}
	return exists(c, r.OK, warnPermNotExisted)
}
