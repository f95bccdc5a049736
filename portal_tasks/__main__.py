from portal_tasks.main import program

program.run()
