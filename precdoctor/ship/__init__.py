"""What is shipped to the user: artifacts, external tools' commands, verification scripts."""
