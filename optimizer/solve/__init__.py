"""One solve: dispatch by method, the supervised child, typed options and result (one gap),
diagnosis of infeasible instances, and the verified wrapper that checks before reporting."""
