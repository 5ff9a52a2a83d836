from homevalue.dashboards.app import main

main()
