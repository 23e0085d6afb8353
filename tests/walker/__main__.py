from walker import main

main()
