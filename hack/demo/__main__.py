import sys

from demo.control import main

sys.exit(main(sys.argv[1:]))
