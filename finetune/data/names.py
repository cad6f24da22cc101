"""Name lists the PII scrubber matches against: common first names and surnames from many
languages, and the names that are also ordinary English words (counted only next to a name).

Kept apart from the rules in scrub.py so the rules read on one screen.
"""

from __future__ import annotations

FIRST_NAMES: tuple[str, ...] = tuple(
    """
James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel
Matthew Anthony Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald
Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon
Benjamin Samuel Gregory Alexander Patrick Raymond Dennis Jerry Tyler Aaron Jose Adam Nathan
Henry Douglas Zachary Peter Kyle Walter Ethan Jeremy Harold Keith Roger Noah Gerald
Carl Terry Sean Arthur Lawrence Jesse Dylan Bryan Joe Billy Bruce Albert Willie Gabriel Logan
Alan Juan Wayne Roy Ralph Randy Eugene Vincent Russell Elijah Louis Bobby Philip Johnny Mary
Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Nancy Lisa Betty Margaret
Sandra Ashley Kimberly Emily Donna Michelle Dorothy Carol Amanda Melissa Deborah Stephanie
Rebecca Sharon Laura Cynthia Kathleen Amy Shirley Angela Helen Anna Brenda Pamela Nicole Emma
Samantha Katherine Christine Debra Rachel Catherine Carolyn Janet Maria Heather Diane Julie
Joyce Kelly Christina Lauren Joan Evelyn Olivia Judith Megan Cheryl Martha Andrea Frances
Hannah Jacqueline Ann Gloria Jean Kathryn Alice Teresa Sara Janice Doris Madison Julia Judy
Abigail Marie Denise Beverly Theresa Marilyn Danielle Diana Brittany Natalie Sophia Isabella
Alexis Kayla Charlotte Mohammed Muhammad Ahmed Fatima Aisha Omar Hassan Yusuf Priya Rahul Anil
Sunita Deepak Ravi Arjun Ananya Wei Ming Hiroshi Yuki Kenji Sakura Haruto Carlos Luis Miguel
Javier Alejandro Sofia Camila Valentina Mateo Diego Lucia Pedro Ana Olga Ivan Dmitri Sergei
Natasha Katarina Anya Lars Sven Ingrid Astrid Klaus Hans Francois Pierre Amelie Chloe Giulia
Marco Luca Giovanni Francesca Kwame Amara Chidi Ngozi Oluwaseun Tunde Zanele Thabo Siobhan
Niamh Aoife Ciaran Declan Eamon Rhys Dafydd Angus Fiona Hamish Isla Freya Harriet Imogen
Oliver Harry Charlie Alfie Freddie Archie Leo Oscar Theo Arlo Finn Ella Mia Ava Amelia
Isabelle Evie Layla Zara Nia Maya Aaliyah Jasmine Tanisha Keisha Jamal Tyrone Malik Darnell
Latoya Marcus Derek Trevor Colin Graham Nigel Ian Neil Martin Simon Gordon Craig Stuart
Wendy Tracy Gail Lorraine Yvonne Agnes Edith Mildred Ethel Gertrude Bernard Clarence Herbert
Leonard Howard Stanley Norman Francis Ernest Eleanor Louise Bianca Elena Irina Svetlana Yasmin
Leila Nadia Samir Karim Tariq Bilal Imran Ayesha Zainab Mei Xiu Hao Jin Yong Sanjay Vikram
Nikhil Kavya Meera Lakshmi Thanh Minh Linh Duc Hoang Tomasz Katarzyna Agnieszka Piotr
""".split()
)

SURNAMES: tuple[str, ...] = tuple(
    """
Smith Johnson Williams Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez
Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson Harris Sanchez Clark
Ramirez Lewis Robinson Allen Wright Scott Torres Nguyen Flores Adams Nelson Rivera Campbell
Mitchell Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart
Morris Morales Murphy Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Kelly Howard Ramos
Kim Cox Richardson Watson Brooks Chavez Bennett Mendoza Ruiz Hughes Alvarez Castillo Sanders
Patel Myers Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Coleman Butler Henderson
Barnes Gonzales Fisher Vasquez Simmons Romero Patterson Hamilton Graham Reynolds Griffin
Wallace Moreno Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Castro
Marshall Owens Harrison Fernandez McDonald Kennedy Vargas Chen Freeman Webb Tucker Guzman
Crawford Olson Simpson Mendez Silva Shaw Snyder Dixon Munoz Hicks Holmes Palmer Wagner
Robertson Boyd Salazar Warren Meyer Schmidt Garza Daniels Ferguson Nichols Stephens Soto
Weaver Gardner Payne Dunn Kelley Spencer Hawkins Arnold Pierce Vazquez Hansen Peters Santos
Bradley Elliott Cunningham Duncan Armstrong Hudson Carroll Riley Andrews Alvarado Delgado
Perkins Hoffman Johnston Matthews Pena Richards Contreras Willis Sandoval Wang Zhang Liu Yang
Huang Zhao Zhou Zhu Guo Lin Gao Luo Tanaka Suzuki Takahashi Watanabe Yamamoto Nakamura
Kobayashi Sato Choi Jung Kang Cho Yoon Singh Sharma Kumar Gupta Shah Mehta Reddy Iyer Rao
Khan Hussain Rahman Okafor Okonkwo Adeyemi Mensah Osei Nkosi Dlamini Mwangi Kariuki Kowalski
Nowak Novak Muller Schneider Fischer Weber Becker Rossi Russo Ferrari Esposito Bianchi Romano
Dubois Lefebvre Moreau Laurent Petrov Ivanov Smirnov Popov Jensen Nielsen Larsen Andersson
Johansson Eriksson O'Brien O'Connor O'Neill Byrne Doyle Walsh McCarthy Gallagher Quinn
MacLeod Fraser Chowdhury Banerjee Mukherjee Nair Pillai Kapoor Malhotra Bhatt Joshi Desai
Fitzgerald Donovan Brennan Kavanagh Hernandes Schwartz Goldberg Friedman Katz Cohen Levy
""".split()
)

# Ordinary English words, places and months that are also names: counted only next to a name.
AMBIGUOUS_NAMES: frozenset[str] = frozenset(
    """
Will Mark Grace Hope Faith Joy Rose Bill Pat Sue Frank Guy Jack Ray Dawn Iris Ivy Holly Lily
Daisy Amber Ruby Crystal April May June August Summer Autumn Drew Chase Dale Glen Victoria
Austin Jordan Georgia Chelsea Florence Sydney Paris Dallas Art Penny Poppy Sandy Hunter Mason
Cole Miles Don Max Christian Reed Brook Skye Angel Ebony Violet Willow Hazel Jade Pearl Ginger Brown
White Green Black Young King Hill Wood Woods Stone Long Price Bell Cook Baker Hall Walker Ward
Gray Grey West Wells Burns Hunt Mills Rice Grant Lane Berry Carter Fox Hart Knight Moss Page
Cross Banks Marsh Park Sun Little Day Dean Holt Booth Chambers Bishop Parsons Barber Mann
""".split()
)
