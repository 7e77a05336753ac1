"""Server-side table printers: the columns kube-apiserver returns for each kind, as pure functions.

kubectl prints whatever columns the server's ``Table`` holds, so to make ``kubectl get`` through
Clusterpedia look exactly like ``kubectl get`` against a member cluster we compute the same cells
kube-apiserver's printers compute (k8s.io/kubernetes pkg/printers/internalversion), from the stored
object decoded once. Wide (priority 1) cells are always included, as kube-apiserver does; kubectl
hides them unless ``-o wide``.

``printer_for(group, resource)`` finds the printer of a built-in kind; CRDs use
:mod:`apiserver.printers.crd` with their ``additionalPrinterColumns``.
"""

from __future__ import annotations

from apiserver.printers.base import CellsFn, Column, Printer
from apiserver.printers.registry import DEFAULT_PRINTER, NAME_AGE_PRINTER, printer_for

__all__ = ["DEFAULT_PRINTER", "NAME_AGE_PRINTER", "CellsFn", "Column", "Printer", "printer_for"]
