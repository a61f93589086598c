-- jobq schema, version 5: hardening against bad input and faults.
--
-- Sections below are filled by the hardening work (issue: one bad job must
-- never stop the others).

-- == Results and error history ==

-- == Claims, unique keys, leases ==
